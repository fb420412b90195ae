namespace K2RL.CheckpointEngine;

/// <summary>
/// A version in its wire form: the manifest (with every bucket's checksum) and the bytes of the whole buffer in the
/// manifest's dtype, bucket after bucket. A sender encodes the trainer's buffer into one of these (the host copy: the
/// trainer may change its buffer as soon as this is made), and serves buckets from it until the next version.
/// </summary>
public sealed class EncodedVersion
{
    private readonly byte[] bytes;
    private readonly long[] starts;

    internal EncodedVersion(WeightManifest manifest, byte[] bytes)
    {
        Manifest = manifest;
        this.bytes = bytes;
        int size = manifest.Dtype.Size();
        starts = manifest.Buckets.Select(b => b.Offset * size).ToArray();
    }

    public WeightManifest Manifest { get; }

    public int BucketCount => starts.Length;

    /// <summary>The whole buffer (a later version may reuse it once no one reads this one).</summary>
    internal byte[] Bytes => bytes;

    public ReadOnlyMemory<byte> Bucket(int index) => bytes.AsMemory(checked((int)starts[index]), checked((int)Manifest.BucketBytes(index)));

    /// <summary>
    /// Encodes <paramref name="parameters"/> as <paramref name="version"/> in <paramref name="dtype"/>, bucket by bucket
    /// (each hashed while it is in cache). <paramref name="reuse"/>, an earlier version no one reads any more, lends its
    /// bytes when they are the right size.
    /// </summary>
    public static EncodedVersion Encode(long version, ReadOnlySpan<float> parameters, IReadOnlyList<TensorSpec> tensors, WeightDtype dtype,
        long capBytes = BucketPlan.DefaultCapBytes, EncodedVersion? reuse = null)
    {
        var plan = BucketPlan.Manifest(version, parameters.Length, tensors, dtype, capBytes);
        long total = plan.TotalBytes;
        var buffer = reuse is not null && reuse.bytes.LongLength == total ? reuse.bytes : GC.AllocateUninitializedArray<byte>(checked((int)total));
        var buckets = new BucketSpec[plan.Buckets.Count];
        int size = dtype.Size();
        for (int i = 0; i < buckets.Length; i++)
        {
            var b = plan.Buckets[i];
            var dst = buffer.AsSpan(checked((int)(b.Offset * size)), checked((int)(b.Count * size)));
            WireCodec.Encode(parameters.Slice(checked((int)b.Offset), checked((int)b.Count)), dtype, dst);
            buckets[i] = b with { Checksum = WireCodec.Checksum(dst) };
        }

        return new EncodedVersion(plan with { Buckets = buckets }, buffer);
    }
}
