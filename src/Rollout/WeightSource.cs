namespace K2RL.Rollout;

/// <summary>A full weight set (layout-sized flat fp32 buffer) and its policy version.</summary>
public sealed record WeightSet(long Version, float[] Parameters);

/// <summary>Where the engine looks for newer weights at each step boundary (in-process now; the checkpoint engine later).</summary>
public interface IWeightSource
{
    /// <summary>The newest weights if their version is above <paramref name="currentVersion"/>.</summary>
    bool TryGetNewer(long currentVersion, out WeightSet? weights);
}

/// <summary>The trainer (or a test) publishes; the engine takes the newest at its next step boundary.</summary>
public sealed class InProcessWeightSource : IWeightSource
{
    private WeightSet? latest;

    public void Publish(WeightSet weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        Interlocked.Exchange(ref latest, weights);
    }

    public long LatestVersion => Volatile.Read(ref latest)?.Version ?? -1;

    public bool TryGetNewer(long currentVersion, out WeightSet? weights)
    {
        weights = Volatile.Read(ref latest);
        return weights is not null && weights.Version > currentVersion;
    }
}
