using System.Runtime.InteropServices;

namespace K2RL.CheckpointEngine;

/// <summary>What became of one bucket handed to <see cref="WeightAssembler.Accept"/>.</summary>
public enum BucketResult
{
    /// <summary>Verified and copied out.</summary>
    Taken,

    /// <summary>Its bytes do not match the manifest's checksum (or length): fetch it again.</summary>
    Corrupt,

    /// <summary>Already taken for this version; ignored.</summary>
    Duplicate,
}

/// <summary>
/// A receiver's side of every transport. It checks a version's manifest against the receiver's own model (every tensor
/// it holds present with the same shape; no tensor it does not know unless it holds a shard), then takes buckets in any
/// order: each is verified against its checksum and only the tensors the receiver holds are copied out (converted to
/// fp32) into a staging buffer. When every bucket is in, the version is published to <see cref="Slot"/> whole: a
/// reader (the rollout engine, at a step boundary) never sees a partial or unverified version, and a failed transfer
/// leaves the last complete version in place.
/// </summary>
public sealed class WeightAssembler
{
    private readonly IReadOnlyList<TensorSpec> model;
    private readonly Dictionary<string, TensorSpec> byName;
    private readonly long length;
    private readonly bool shard;
    private readonly object gate = new();
    private WeightManifest? pending;
    private float[]? staging;
    private bool[] received = [];
    private ulong[] checksums = [];   // what each taken bucket was verified against
    private int receivedCount;
    private List<CopyRun>[] runs = [];

    /// <param name="model">the receiver's tensors (names, shapes, offsets in its own buffer).</param>
    /// <param name="length">its buffer's length (default: the end of the last tensor).</param>
    /// <param name="shard">it holds only some of the sender's tensors: others in a manifest are skipped, not refused.</param>
    /// <param name="slot">where complete versions go (a fresh one by default).</param>
    public WeightAssembler(IReadOnlyList<TensorSpec> model, long? length = null, bool shard = false, WeightSlot? slot = null)
    {
        this.model = model;
        byName = model.ToDictionary(t => t.Name, StringComparer.Ordinal);
        this.length = length ?? model.Max(t => t.End);
        this.shard = shard;
        Slot = slot ?? new WeightSlot();
    }

    /// <summary>The complete versions: the receiver's <see cref="IWeightSource"/>.</summary>
    public WeightSlot Slot { get; }

    /// <summary>The newest complete version (−1 before the first).</summary>
    public long HeldVersion => Slot.LatestVersion;

    /// <summary>The version being assembled, if any.</summary>
    public WeightManifest? Pending
    {
        get
        {
            lock (gate)
            {
                return pending;
            }
        }
    }

    /// <summary>The manifest of the last version completed, every bucket's checksum filled in (what a holder serves on).</summary>
    public WeightManifest? LastCompleted { get; private set; }

    /// <summary>The buckets of the pending version not yet taken.</summary>
    public IReadOnlyList<int> Missing
    {
        get
        {
            lock (gate)
            {
                return pending is null ? [] : Enumerable.Range(0, received.Length).Where(i => !received[i]).ToList();
            }
        }
    }

    /// <summary>
    /// Starts assembling <paramref name="manifest"/>'s version, or continues it (the same version, the same manifest:
    /// a repair of missing buckets; returns true). A version not above the held one, or below the one in progress, and
    /// a manifest that does not match the receiver's model are refused; the receiver keeps what it has. Another
    /// manifest of the version in progress (a sender that restarted and planned other buckets) starts it over.
    /// </summary>
    public bool Begin(WeightManifest manifest)
    {
        manifest.Check();
        lock (gate)
        {
            if (manifest.Version <= HeldVersion)
            {
                throw new WeightTransferException($"weight version {manifest.Version} is not newer than the held version {HeldVersion}");
            }

            if (pending is not null && manifest.Version == pending.Version && manifest.Dtype == pending.Dtype && SamePlan(manifest, pending) &&
                manifest.Tensors.SequenceEqual(pending.Tensors, TensorSpecComparer.Instance))
            {
                // the same plan; a repair from a holder lists the checksums a streaming sender left to its buckets
                pending = pending with { Buckets = pending.Buckets.Zip(manifest.Buckets, (a, b) => a.Checksum != 0 ? a : b).ToList() };
                return true;
            }

            if (pending is not null && manifest.Version < pending.Version)
            {
                throw new WeightTransferException($"weight version {manifest.Version} is older than version {pending.Version} in progress");
            }

            var plan = Match(manifest);
            Abandon();
            pending = manifest;
            runs = plan;
            staging = Slot.Rent(length);
            received = new bool[manifest.Buckets.Count];
            checksums = new ulong[manifest.Buckets.Count];
            receivedCount = 0;
            return false;
        }
    }

    /// <summary>
    /// Verifies bucket <paramref name="index"/> of <paramref name="version"/> and copies out what the receiver holds, in
    /// one pass: the copy into the staging buffer (streaming stores) computes the checksum
    /// (<see cref="K2RL.Kernels.WordChecksum"/>) of what it moves, so verifying reads nothing twice. A bucket
    /// that fails its checksum leaves its bytes in staging, unpublished, until it is taken again. The checksum is the
    /// manifest's, or where that is 0 (a sender that streams buckets as it encodes them), <paramref name="carried"/>.
    /// </summary>
    public BucketResult Accept(long version, int index, ReadOnlySpan<byte> data, ulong carried = 0)
    {
        lock (gate)
        {
            var b = CheckBucket(version, index);
            if (received[index])
            {
                return BucketResult.Duplicate;
            }

            ulong expected = b.Checksum != 0 ? b.Checksum : carried != 0 ? carried
                : throw new WeightTransferException($"bucket {index} of version {version} carries no checksum, and the manifest lists none for it");

            if (data.Length != pending!.BucketBytes(index))
            {
                return BucketResult.Corrupt;
            }

            // One pass: each run the receiver holds is copied out (widened from bf16) by the loop that sums it; the
            // bytes between runs (tensors it does not hold) are summed alone.
            int size = pending.Dtype.Size();
            var sum = default(K2RL.Kernels.WordChecksum);
            long next = 0;
            foreach (var run in runs[index])
            {
                if (run.Source > next)
                {
                    sum.Add(data.Slice(checked((int)(next * size)), checked((int)((run.Source - next) * size))), next * size);
                }

                var src = data.Slice(checked((int)(run.Source * size)), checked((int)(run.Count * size)));
                var dst = staging.AsSpan(checked((int)run.Target), checked((int)run.Count));
                if (pending.Dtype == WeightDtype.F32)
                {
                    sum.CopyAndAdd(src, MemoryMarshal.AsBytes(dst), run.Source * size);
                }
                else
                {
                    sum.WidenBf16AndAdd(MemoryMarshal.Cast<byte, ushort>(src), dst, run.Source * size);
                }

                next = run.Source + run.Count;
            }

            if (next * size < data.Length)
            {
                sum.Add(data[checked((int)(next * size))..], next * size);
            }

            WireCodec.FenceStreamingStores();
            if (sum.Finish(data.Length) != expected)
            {
                return BucketResult.Corrupt;
            }

            checksums[index] = expected;
            received[index] = true;
            receivedCount++;
            return BucketResult.Taken;
        }
    }

    /// <summary>When every bucket is in: publishes the version to <see cref="Slot"/> and returns it; else null.</summary>
    public WeightSet? TryComplete()
    {
        lock (gate)
        {
            if (pending is null || receivedCount < received.Length)
            {
                return null;
            }

            var done = new WeightSet(pending.Version, staging!);
            LastCompleted = pending with { Buckets = pending.Buckets.Select((b, i) => b with { Checksum = checksums[i] }).ToList() };
            pending = null;
            staging = null;
            Slot.Publish(done);
            return done;
        }
    }

    /// <summary>Drops the version in progress (its sender is gone): the held version stays.</summary>
    public void Abandon()
    {
        lock (gate)
        {
            if (staging is not null)
            {
                Slot.Return(staging);
            }

            pending = null;
            staging = null;
        }
    }

    private BucketSpec CheckBucket(long version, int index)
    {
        if (pending is null || pending.Version != version)
        {
            throw new WeightTransferException($"bucket {index} of version {version} arrived, but " +
                (pending is null ? "no version is in progress (send its manifest first)" : $"version {pending.Version} is in progress"));
        }

        if (index < 0 || index >= received.Length)
        {
            throw new WeightTransferException($"bucket {index} of version {version} is beyond the manifest's {received.Length} buckets");
        }

        return pending.Buckets[index];
    }

    // Which parts of each bucket land where in the receiver's buffer; refuses a manifest that does not fit the model.
    private List<CopyRun>[] Match(WeightManifest m)
    {
        string at = $"manifest of version {m.Version}";
        var sent = m.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var missing = model.Where(t => !sent.ContainsKey(t.Name)).Select(t => t.Name).ToList();
        var unknown = shard ? [] : m.Tensors.Where(t => !byName.ContainsKey(t.Name)).Select(t => t.Name).ToList();
        if (missing.Count > 0 || unknown.Count > 0)
        {
            throw new WeightTransferException($"{at} does not match this receiver's model: " +
                (missing.Count > 0 ? $"missing {Names(missing)}" : "") + (missing.Count > 0 && unknown.Count > 0 ? "; " : "") +
                (unknown.Count > 0 ? $"unknown {Names(unknown)}" : ""));
        }

        foreach (var t in model)
        {
            if (!sent[t.Name].Shape.SequenceEqual(t.Shape))
            {
                throw new WeightTransferException($"{at}: tensor {t.Name} is {sent[t.Name].ShapeText}; this receiver's model has {t.ShapeText}");
            }
        }

        var plan = new List<CopyRun>[m.Buckets.Count];
        bool identity = m.ParameterCount == length && model.Count == m.Tensors.Count && model.All(t => sent[t.Name].Offset == t.Offset);
        for (int i = 0; i < plan.Length; i++)
        {
            plan[i] = identity ? [new CopyRun(0, m.Buckets[i].Offset, m.Buckets[i].Count)] : [];
        }

        if (!identity)
        {
            var starts = m.Buckets.Select(b => b.Offset).ToArray();
            foreach (var t in model)
            {
                var s = sent[t.Name];
                int bi = Array.BinarySearch(starts, s.Offset);
                bi = bi >= 0 ? bi : ~bi - 1;
                var b = m.Buckets[bi];
                if (s.End > b.End)
                {
                    throw new WeightTransferException($"{at}: tensor {t.Name} spans buckets {bi} and after (a bucket holds whole tensors)");
                }

                plan[bi].Add(new CopyRun(s.Offset - b.Offset, t.Offset, t.Length));
            }

            foreach (var runs in plan)
            {
                runs.Sort((x, y) => x.Source.CompareTo(y.Source));   // the gaps between them are summed in Accept
            }
        }

        return plan;
    }

    // Same buckets; checksums equal where both list one.
    private static bool SamePlan(WeightManifest a, WeightManifest b) => a.Buckets.Count == b.Buckets.Count &&
        a.Buckets.Zip(b.Buckets).All(p => p.First.Offset == p.Second.Offset && p.First.Count == p.Second.Count &&
            (p.First.Checksum == p.Second.Checksum || p.First.Checksum == 0 || p.Second.Checksum == 0));

    private static string Names(List<string> names) =>
        string.Join(", ", names.Take(5)) + (names.Count > 5 ? $" and {names.Count - 5} more" : "");

    /// <summary>Tensors equal by value (their shapes are arrays).</summary>
    private sealed class TensorSpecComparer : IEqualityComparer<TensorSpec>
    {
        public static readonly TensorSpecComparer Instance = new();

        public bool Equals(TensorSpec? a, TensorSpec? b) =>
            a is not null && b is not null && a.Name == b.Name && a.Offset == b.Offset && a.Shape.SequenceEqual(b.Shape);

        public int GetHashCode(TensorSpec t) => HashCode.Combine(t.Name, t.Offset);
    }

    /// <summary>Elements [Source, Source + Count) of a bucket go to [Target, Target + Count) of the receiver's buffer.</summary>
    [StructLayout(LayoutKind.Auto)]
    private readonly record struct CopyRun(long Source, long Target, long Count);
}
