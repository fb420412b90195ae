namespace K2RL.CheckpointEngine;

/// <summary>A full weight set (layout-sized flat fp32 buffer) and its policy version. Complete and verified: nothing
/// partial is ever one of these.</summary>
public sealed record WeightSet(long Version, float[] Parameters)
{
    internal int Readers;   // readers that took it and have not released it (guarded by the WeightSlot's lock)
}

/// <summary>Where a rollout engine looks for newer weights at each step boundary.</summary>
public interface IWeightSource
{
    /// <summary>The newest weights if their version is above <paramref name="currentVersion"/>.</summary>
    bool TryGetNewer(long currentVersion, out WeightSet? weights);

    /// <summary>The reader has copied <paramref name="weights"/> out (its buffer may be reused for a later version).</summary>
    void Release(WeightSet weights)
    {
    }
}

/// <summary>
/// The trainer's side of the checkpoint engine: after each optimizer step it hands over its flat parameter buffer
/// with the next version. Versions are monotonic per job: publishing a version that is not above the last one is
/// refused. The buffer is copied (or sent) before this returns, so the trainer may change it again at once.
/// </summary>
public interface IWeightPublisher
{
    /// <summary>The last version published (−1 before the first).</summary>
    long LatestVersion { get; }

    void Publish(long version, ReadOnlySpan<float> parameters);
}

/// <summary>
/// The in-process transport (the co-located default): one process holds the trainer and its rollout engines, so a
/// version is one copy of the buffer (into a buffer no reader holds any more), and every engine takes the newest at
/// its next step boundary. With <see cref="WeightDtype.Bf16"/> the copy goes through bf16 (the values a remote receiver
/// of bf16 would get). The shared-memory and network transports implement the same two interfaces.
/// </summary>
public sealed class InProcessWeightChannel(WeightDtype dtype = WeightDtype.F32) : IWeightSource, IWeightPublisher
{
    private readonly WeightSlot slot = new();
    private ushort[] bf16 = [];

    public long LatestVersion => slot.LatestVersion;

    public void Publish(long version, ReadOnlySpan<float> parameters)
    {
        slot.CheckNewer(version);
        var buffer = slot.Rent(parameters.Length);
        if (dtype == WeightDtype.Bf16)
        {
            if (bf16.Length != parameters.Length)
            {
                bf16 = new ushort[parameters.Length];
            }

            WireCodec.ToBf16(parameters, bf16);
            WireCodec.FromBf16(bf16, buffer);
        }
        else
        {
            parameters.CopyTo(buffer);
        }

        slot.Publish(new WeightSet(version, buffer));
    }

    /// <summary>Publishes a weight set the caller hands over (it must not change the buffer afterwards).</summary>
    public void Publish(WeightSet weights) => slot.Publish(weights);

    public bool TryGetNewer(long currentVersion, out WeightSet? weights) => slot.TryGetNewer(currentVersion, out weights);

    public void Release(WeightSet weights) => slot.Release(weights);
}

/// <summary>
/// The newest complete version a receiver holds, and the buffers for the next ones: a buffer is reused only when it is
/// not the newest and every reader that took it has released it, so a version being loaded is never overwritten.
/// </summary>
/// <param name="initialVersion">the version the reader already has (from elsewhere): only newer ones are taken.</param>
public sealed class WeightSlot(long initialVersion = -1) : IWeightSource
{
    private readonly object gate = new();
    private readonly List<WeightSet> retired = [];
    private WeightSet? latest;
    private long latestVersion = initialVersion;

    /// <summary>The newest version published (−1 before the first).</summary>
    public long LatestVersion => Interlocked.Read(ref latestVersion);

    /// <summary>The newest version, if any (for a holder serving it on).</summary>
    public WeightSet? Latest
    {
        get
        {
            lock (gate)
            {
                return latest;
            }
        }
    }

    /// <summary>Refuses a version that is not above the newest.</summary>
    public void CheckNewer(long version)
    {
        long last = LatestVersion;
        if (version <= last)
        {
            throw new WeightTransferException($"weight version {version} is not above the last published version {last}");
        }
    }

    /// <summary>A buffer of <paramref name="length"/> floats that no reader holds (its contents are undefined).</summary>
    public float[] Rent(long length)
    {
        lock (gate)
        {
            int i = retired.FindIndex(w => w.Readers == 0 && w.Parameters.LongLength == length);
            if (i >= 0)
            {
                var buffer = retired[i].Parameters;
                retired.RemoveAt(i);
                return buffer;
            }
        }

        return GC.AllocateUninitializedArray<float>(checked((int)length));
    }

    /// <summary>Gives a rented buffer back unused (a transfer that failed).</summary>
    public void Return(float[] buffer)
    {
        lock (gate)
        {
            retired.Add(new WeightSet(-1, buffer));
        }
    }

    public void Publish(WeightSet weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        lock (gate)
        {
            CheckNewer(weights.Version);
            if (latest is not null)
            {
                retired.Add(latest);
                int idle;
                while (retired.Count > 1 && (idle = retired.FindIndex(w => w.Readers == 0)) >= 0)
                {
                    retired.RemoveAt(idle);   // keep one spare (with the newest: the double buffer); the GC takes the rest
                }
            }

            latest = weights;
            Interlocked.Exchange(ref latestVersion, weights.Version);
        }
    }

    public bool TryGetNewer(long currentVersion, out WeightSet? weights)
    {
        weights = null;
        if (LatestVersion <= currentVersion)
        {
            return false;
        }

        lock (gate)
        {
            weights = latest;
            if (weights is null || weights.Version <= currentVersion)
            {
                weights = null;
                return false;
            }

            weights.Readers++;
            return true;
        }
    }

    public void Release(WeightSet weights)
    {
        lock (gate)
        {
            if (weights.Readers > 0)
            {
                weights.Readers--;
            }
        }
    }
}
