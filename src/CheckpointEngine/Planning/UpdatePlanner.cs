using K2RL.Common;

namespace K2RL.CheckpointEngine.Planning;

/// <summary>
/// The weight-update planner: from a cluster, the tensors to ship and (through the cluster) the bandwidths, the
/// bucket size, the pipeline schedule and the update time of two designs — checkpoint-engine's bucketed broadcast
/// (<see cref="BroadcastPlanner"/>) and a static shard-to-shard schedule (<see cref="ShardToShardPlanner"/>). A pure
/// function: no clock, no I/O. docs/CKPT_PLANNER.md states the model and every assumption.
/// </summary>
public static class UpdatePlanner
{
    public const long GiB = 1L << 30;

    /// <summary>checkpoint-engine places each tensor in a bucket at a multiple of this many bytes.</summary>
    public const long Align = 256;

    public static long Aligned(long bytes) => (bytes + Align - 1) / Align * Align;

    public static UpdatePlan Plan(ClusterSpec cluster, IReadOnlyList<TensorDescriptor> tensors)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        if (tensors.Count == 0)
        {
            throw new K2Exception("the planner needs at least one tensor to ship");
        }

        var owners = SplitByCount(tensors, cluster.TrainerAccelerators);
        long largest = tensors.Max(t => Aligned(t.Bytes));
        var (bucketBytes, h2dBuffer) = BucketBytes(cluster.Buckets, largest);
        var buckets = owners.Select(o => Fill(o, bucketBytes, cluster.Inference)).ToArray();
        var bucketing = new Bucketing(bucketBytes, h2dBuffer, buckets.Sum(b => b.Count), buckets.Max(b => b.Count), owners.Length);

        var broadcast = BroadcastPlanner.Plan(cluster, buckets, bucketing);
        var shardToShard = ShardToShardPlanner.Plan(cluster, tensors, bucketBytes);
        return new UpdatePlan(cluster, tensors.Count, tensors.Sum(t => t.Bytes), largest, bucketing, broadcast, shardToShard,
            Assumptions(cluster, bucketing));
    }

    /// <summary>
    /// checkpoint-engine's bucket size (ps.py, <c>_detect_bucket_size</c>): free = mem_fraction × free memory. When the
    /// largest tensor fits in free/3, three buffers (one host-to-device, two for the double-buffered broadcast) share
    /// it and bucket = min(max(cap, largest), free/3); otherwise two buffers, free/2, and owners copy one at a time.
    /// </summary>
    public static (long Bytes, bool H2dBuffer) BucketBytes(BucketMemorySpec spec, long largestTensor)
    {
        long free = (long)(spec.FreeMemoryGib * GiB * spec.MemFraction);
        long third = free / (3 * Align) * Align;
        long cap = (long)(spec.CapGib * GiB);
        if (largestTensor <= third)
        {
            return (Math.Min(Math.Max(cap, largestTensor), third), true);
        }

        long half = free / (2 * Align) * Align;
        return largestTensor <= half
            ? (Math.Min(Math.Max(cap, largestTensor), half), false)
            : throw new K2Exception($"the largest tensor ({largestTensor:N0} bytes) does not fit in half the bucket memory "
                                    + $"({half:N0} bytes = {spec.MemFraction} × {spec.FreeMemoryGib} GiB / 2): give the buckets more free memory");
    }

    /// <summary>
    /// The tensors each weight holder owns: contiguous runs of ceil(n / holders) tensors, as checkpoint-engine's
    /// example splits a checkpoint over its ranks (examples/update.py, <c>split_tensors</c>). Later holders may own none.
    /// </summary>
    public static IReadOnlyList<TensorDescriptor>[] SplitByCount(IReadOnlyList<TensorDescriptor> tensors, int holders)
    {
        int per = (tensors.Count + holders - 1) / holders;
        return Enumerable.Range(0, holders)
            .Select(h => (IReadOnlyList<TensorDescriptor>)tensors.Skip(h * per).Take(per).ToArray())
            .ToArray();
    }

    /// <summary>One owner's buckets, filled in order until the next tensor would overflow (<c>_gen_h2d_buckets</c>).</summary>
    public static List<BucketLoad> Fill(IReadOnlyList<TensorDescriptor> owned, long bucketBytes, InferenceSpec inference)
    {
        var buckets = new List<BucketLoad>();
        var current = new BucketLoad(inference.Tp);
        foreach (var t in owned)
        {
            long size = Aligned(t.Bytes);
            if (current.Bytes + size > bucketBytes && current.Tensors > 0)
            {
                buckets.Add(current);
                current = new BucketLoad(inference.Tp);
            }

            current.Add(t, size, inference);
        }

        if (current.Tensors > 0)
        {
            buckets.Add(current);
        }

        return buckets;
    }

    private static List<string> Assumptions(ClusterSpec c, Bucketing b)
    {
        static string G(double bytesPerSecond) => $"{bytesPerSecond / 1e9:0.#} GB/s";
        var list = new List<string>
        {
            $"cluster {c.Name}: {c.Nodes} node(s) × {c.AcceleratorsPerNode} {c.Accelerator.Kind}; inference replicas of tp {c.Inference.Tp}"
            + (c.Inference.ExpertParallel ? " with expert parallelism" : "") + $" ({c.Replicas} replica(s))"
            + (c.Trainer.Colocated ? "; trainer co-located" : $"; trainer on {c.Trainer.Nodes} node(s) of its own")
            + $", new weights in {(c.Trainer.WeightsOnHost ? "host" : "device")} memory",
            $"host to device: {c.HostToDevice.GbPerS} GB/s × {c.HostToDevice.Efficiency} shared by {c.HostLinkSharedBy} = {G(c.HostToDeviceConcurrent)} per accelerator when all copy",
            $"intra-node: {c.IntraNode.GbPerS} GB/s × {c.IntraNode.Efficiency} = {G(c.IntraNode.Effective)}, {c.IntraNode.LatencyUs} µs per hop",
            $"inter-node: {c.NicsPerNode} NIC(s) × {c.InterNode.GbPerS} GB/s × {c.InterNode.Efficiency} = {G(c.NicsPerNode * c.InterNode.Effective)} per node, {c.InterNode.LatencyUs} µs per hop",
            $"device copies at {c.Accelerator.MemoryGbPerS} GB/s (read + write: 2 bytes moved per byte copied)",
            $"buckets: {c.Buckets.MemFraction} × {c.Buckets.FreeMemoryGib} GiB free, cap {c.Buckets.CapGib} GiB → {b.BucketBytes / (double)GiB:0.00} GiB"
            + (b.H2dBuffer ? " (free/3: host-to-device buffer + double buffer)" : " (free/2: no host-to-device buffer; owners copy in turn)"),
            $"weights held by {b.Owners} accelerator(s), contiguous runs of equal tensor counts (checkpoint-engine examples/update.py)",
            $"inference engine: {c.Inference.ReloadUsPerTensor} µs per tensor it loads from a bucket, plus its shard's bytes copied on the device",
        };
        return list;
    }
}

/// <summary>A bucket being filled: its bytes, its tensors and the bytes each rank of a replica copies out of it.</summary>
public sealed class BucketLoad
{
    private readonly long[] perRank;

    public BucketLoad(int tp) => perRank = new long[tp];

    public long Bytes { get; private set; }

    public int Tensors { get; private set; }

    /// <summary>The most bytes one inference rank copies out of this bucket.</summary>
    public long MaxRankBytes => perRank.Max();

    public void Add(TensorDescriptor t, long alignedBytes, InferenceSpec inference)
    {
        Bytes += alignedBytes;
        Tensors++;
        for (int k = 0; k < perRank.Length; k++)
        {
            perRank[k] += t.BytesFor(k, perRank.Length, inference.ExpertParallel);
        }
    }
}
