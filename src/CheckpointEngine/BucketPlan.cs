namespace K2RL.CheckpointEngine;

/// <summary>
/// How big a bucket is and which tensors go in each. The rule is checkpoint-engine's (ps.py, <c>_detect_bucket_size</c>):
/// a bucket is at most a cap (there 8 GiB of GPU memory; here a few MiB of host memory, so that a version makes several
/// buckets to pipeline and a bucket message fits gRPC's default 4 MiB limit), never smaller than the largest tensor (a tensor is never split), and at most a third of the free
/// memory: two buckets in flight (the double buffer) plus the one being loaded. When the largest tensor is above a third,
/// the pipeline falls back to one bucket at a time (half the free memory); above a half, the update cannot be done.
/// </summary>
public static class BucketPlan
{
    /// <summary>The default cap: 4 MiB less 64 KiB, so that a bucket and its message envelope fit gRPC's default 4 MiB
    /// message limit (k2-nano's 72 MB of fp32 is 18 buckets).</summary>
    public const long DefaultCapBytes = (4L << 20) - (64 << 10);

    /// <summary>The bucket size in bytes and whether the double buffer fits (else: one bucket at a time).</summary>
    public static (long Bytes, bool Pipelined) Size(long capBytes, long largestTensorBytes, long freeBytes)
    {
        if (capBytes <= 0 || largestTensorBytes <= 0)
        {
            throw new ArgumentException($"bucket cap ({capBytes}) and largest tensor ({largestTensorBytes}) must be positive");
        }

        long wanted = Math.Max(capBytes, largestTensorBytes);
        if (largestTensorBytes <= freeBytes / 3)
        {
            return (Math.Min(wanted, freeBytes / 3), true);
        }

        if (largestTensorBytes <= freeBytes / 2)
        {
            return (Math.Min(wanted, freeBytes / 2), false);
        }

        throw new WeightTransferException(
            $"the largest tensor ({largestTensorBytes} bytes) does not fit in half of the free memory ({freeBytes} bytes): no bucket can hold it");
    }

    /// <summary>The memory this process may still take: the GC's budget less what it holds now.</summary>
    public static long FreeBytes()
    {
        var info = GC.GetGCMemoryInfo();
        return Math.Max(0, info.TotalAvailableMemoryBytes - info.MemoryLoadBytes);
    }

    /// <summary>
    /// Buckets over <paramref name="parameterCount"/> elements: consecutive whole tensors up to <paramref name="bucketElements"/>
    /// (a larger tensor alone); padding between tensors rides with the bucket before it. Checksums are left 0.
    /// </summary>
    public static List<BucketSpec> Plan(IReadOnlyList<TensorSpec> tensors, long parameterCount, long bucketElements)
    {
        if (bucketElements <= 0)
        {
            throw new ArgumentException($"bucket size must be positive, got {bucketElements} elements");
        }

        var starts = tensors.Select(t => t.Offset).Where(o => o > 0 && o < parameterCount).Order().Distinct().ToList();
        var buckets = new List<BucketSpec>();
        long begin = 0;
        long last = 0;   // the last tensor start that keeps [begin, start) within the bucket size
        foreach (long s in starts)
        {
            if (s - begin > bucketElements && last > begin)
            {
                buckets.Add(new BucketSpec(begin, last - begin, 0));
                begin = last;
            }

            last = s;
        }

        if (parameterCount - begin > bucketElements && last > begin)
        {
            buckets.Add(new BucketSpec(begin, last - begin, 0));
            begin = last;
        }

        buckets.Add(new BucketSpec(begin, parameterCount - begin, 0));
        return buckets;
    }

    /// <summary>
    /// The manifest of a version of <paramref name="parameters"/>: tensors, bucket plan (cap, largest tensor, free memory)
    /// and no checksums yet (a sender fills each as it encodes the bucket).
    /// </summary>
    public static WeightManifest Manifest(long version, long parameterCount, IReadOnlyList<TensorSpec> tensors, WeightDtype dtype,
        long capBytes = DefaultCapBytes)
    {
        long largest = tensors.Count == 0 ? 1 : tensors.Max(t => t.Length);
        var (bytes, _) = Size(capBytes, largest * dtype.Size(), FreeBytes());
        var manifest = new WeightManifest(version, parameterCount, dtype, tensors, Plan(tensors, parameterCount, bytes / dtype.Size()));
        manifest.Check();
        return manifest;
    }
}
