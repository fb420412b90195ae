namespace K2RL.CheckpointEngine;

/// <summary>A full weight set (layout-sized flat fp32 buffer) and its policy version.</summary>
public sealed record WeightSet(long Version, float[] Parameters);

/// <summary>Where a rollout engine looks for newer weights at each step boundary.</summary>
public interface IWeightSource
{
    /// <summary>The newest weights if their version is above <paramref name="currentVersion"/>.</summary>
    bool TryGetNewer(long currentVersion, out WeightSet? weights);
}

/// <summary>
/// The trainer's side of the checkpoint engine: after each optimizer step it hands over its flat parameter buffer
/// with the next version. Versions are monotonic per job: publishing a version that is not above the last one is
/// refused. The buffer is copied before this returns, so the trainer may change it again at once.
/// </summary>
public interface IWeightPublisher
{
    /// <summary>The last version published (−1 before the first).</summary>
    long LatestVersion { get; }

    void Publish(long version, ReadOnlySpan<float> parameters);
}

/// <summary>
/// The in-process transport (the co-located default): one process holds the trainer and its rollout engines, so a
/// version is one copy of the buffer, and every engine takes the newest at its next step boundary. The shared-memory
/// and network transports of the checkpoint engine implement the same two interfaces.
/// </summary>
public sealed class InProcessWeightChannel : IWeightSource, IWeightPublisher
{
    private WeightSet? latest;

    public long LatestVersion => Volatile.Read(ref latest)?.Version ?? -1;

    public void Publish(long version, ReadOnlySpan<float> parameters) => Publish(new WeightSet(version, parameters.ToArray()));

    /// <summary>Publishes a weight set the caller hands over (it must not change the buffer afterwards).</summary>
    public void Publish(WeightSet weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        long last = LatestVersion;
        if (weights.Version <= last)
        {
            throw new InvalidOperationException($"weight version {weights.Version} is not above the last published version {last}");
        }

        Interlocked.Exchange(ref latest, weights);
    }

    public bool TryGetNewer(long currentVersion, out WeightSet? weights)
    {
        weights = Volatile.Read(ref latest);
        return weights is not null && weights.Version > currentVersion;
    }
}
