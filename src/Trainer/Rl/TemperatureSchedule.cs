using K2RL.Common;

namespace K2RL.Trainer.Rl;

/// <summary>
/// Sampling-temperature decay (SPEC §3): high for exploration at the start, toward a floor over <see cref="Horizon"/>
/// iterations, then held. With p = min(i / Horizon, 1):
/// exponential T = start · (end / start)^p; linear T = start + (end − start) · p; cosine T = end + (start − end) · (1 + cos πp) / 2.
/// K2RL default: exponential 1.2 → 0.8 over the run.
/// </summary>
public sealed record TemperatureSchedule
{
    public string Kind { get; init; } = "exponential";

    public double Start { get; init; } = 1.2;

    public double End { get; init; } = 0.8;

    /// <summary>Iterations over which the temperature moves from Start to End (the job's iteration count by default).</summary>
    public int Horizon { get; init; } = 1;

    public static readonly string[] Kinds = ["exponential", "linear", "cosine", "constant"];

    /// <summary>The temperature of iteration <paramref name="iteration"/> (0-based).</summary>
    public double At(long iteration)
    {
        double p = Horizon <= 0 ? 1 : Math.Clamp(iteration / (double)Horizon, 0, 1);
        return Kind switch
        {
            "exponential" => Start * Math.Pow(End / Start, p),
            "linear" => Start + (End - Start) * p,
            "cosine" => End + (Start - End) * (1 + Math.Cos(Math.PI * p)) / 2,
            "constant" => Start,
            _ => throw new ConfigException($"unknown temperature schedule \"{Kind}\" (one of {string.Join(", ", Kinds)})"),
        };
    }
}
