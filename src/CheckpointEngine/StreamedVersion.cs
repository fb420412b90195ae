using System.Buffers;
using Google.Protobuf;

namespace K2RL.CheckpointEngine;

/// <summary>
/// A version that a network sender encodes bucket by bucket as it streams it (sender pipelining): its manifest goes
/// first with every checksum 0, and each bucket is encoded and hashed when a push first asks for it, while the bucket
/// before is on the wire, and carries its checksum in its own message. Pushes running at once (a tree's groups) share
/// the encoding. <see cref="Finish"/> encodes whatever no push asked for and gives the complete version (the manifest
/// with every checksum) for repairs and direct pushes. The parameters must not change until then.
/// </summary>
internal sealed class StreamedVersion : IBucketSource
{
    private readonly ReadOnlyMemory<float> parameters;
    private readonly byte[] bytes;
    private readonly ulong[] checksums;
    private readonly bool[] encoded;

    public StreamedVersion(long version, ReadOnlyMemory<float> parameters, IReadOnlyList<TensorSpec> tensors, WeightDtype dtype, long capBytes,
        EncodedVersion? reuse)
    {
        this.parameters = parameters;
        Manifest = BucketPlan.Manifest(version, parameters.Length, tensors, dtype, capBytes);
        long total = Manifest.TotalBytes;
        bytes = reuse is not null && reuse.Bytes.LongLength == total ? reuse.Bytes : GC.AllocateUninitializedArray<byte>(checked((int)total));
        checksums = new ulong[Manifest.Buckets.Count];
        encoded = new bool[Manifest.Buckets.Count];
    }

    /// <summary>The plan, every checksum 0 (they travel with the buckets).</summary>
    public WeightManifest Manifest { get; }

    public int BucketCount => encoded.Length;

    public (ByteString Data, ulong Checksum) Bucket(int index)
    {
        var b = Manifest.Buckets[index];
        int size = Manifest.Dtype.Size();
        var dst = bytes.AsMemory(checked((int)(b.Offset * size)), checked((int)(b.Count * size)));
        lock (encoded)
        {
            if (!encoded[index])
            {
                WireCodec.Encode(parameters.Span.Slice(checked((int)b.Offset), checked((int)b.Count)), Manifest.Dtype, dst.Span);
                checksums[index] = WireCodec.Checksum(dst.Span);
                encoded[index] = true;
            }

            return (UnsafeByteOperations.UnsafeWrap(dst), checksums[index]);
        }
    }

    /// <summary>The complete version (every bucket encoded, the manifest with every checksum).</summary>
    public EncodedVersion Finish()
    {
        for (int i = 0; i < BucketCount; i++)
        {
            Bucket(i);
        }

        return new EncodedVersion(Manifest with { Buckets = Manifest.Buckets.Select((b, i) => b with { Checksum = checksums[i] }).ToList() }, bytes);
    }
}
