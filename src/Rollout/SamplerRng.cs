namespace K2RL.Rollout;

/// <summary>
/// A request's own random stream (SplitMix64): one 64-bit state, advanced only by that request's draws,
/// so it can be saved with a paused rollout and restored exactly.
/// </summary>
public struct SamplerRng
{
    public SamplerRng(ulong seed)
    {
        // Mix the seed so nearby seeds start far apart.
        State = Mix(seed ^ 0x6A09E667F3BCC909UL);
    }

    public ulong State { get; set; }

    public static SamplerRng FromState(ulong state) => new() { State = state };

    public ulong NextUInt64()
    {
        State += 0x9E3779B97F4A7C15UL;
        return Mix(State);
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
