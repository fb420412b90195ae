using Wire = K2RL.Protos.V1;

namespace K2RL.CheckpointEngine;

/// <summary>A contiguous range of the flat buffer (whole tensors) moved as one unit, with the checksum of its wire bytes.</summary>
public sealed record BucketSpec(long Offset, long Count, ulong Checksum)
{
    public long End => Offset + Count;
}

/// <summary>
/// What one version of the weights is: its number (monotonic per job), the flat buffer's length, every tensor (name,
/// shape, offset) and the buckets that tile the buffer, each with the checksum of its bytes in <see cref="Dtype"/>.
/// A receiver checks it against its own model before it takes a byte (<see cref="WeightAssembler"/>).
/// </summary>
public sealed record WeightManifest(long Version, long ParameterCount, WeightDtype Dtype, IReadOnlyList<TensorSpec> Tensors,
    IReadOnlyList<BucketSpec> Buckets)
{
    /// <summary>The wire bytes of bucket <paramref name="index"/>.</summary>
    public long BucketBytes(int index) => Buckets[index].Count * Dtype.Size();

    public long TotalBytes => ParameterCount * Dtype.Size();

    public Wire.WeightManifest ToWire()
    {
        var m = new Wire.WeightManifest { Version = Version, ParameterCount = ParameterCount, ChecksumKind = K2RL.Kernels.WordChecksum.Kind };
        foreach (var t in Tensors)
        {
            var e = new Wire.TensorEntry { Name = t.Name, Offset = t.Offset, Dtype = (Wire.WeightDtype)(int)Dtype };
            e.Shape.AddRange(t.Shape);
            m.Tensors.Add(e);
        }

        foreach (var b in Buckets)
        {
            m.Buckets.Add(new Wire.BucketEntry { Offset = b.Offset, Count = b.Count, Checksum = b.Checksum });
        }

        return m;
    }

    /// <summary>Reads a manifest a peer sent, refusing one that is malformed in itself (see <see cref="Check"/>).</summary>
    public static WeightManifest FromWire(Wire.WeightManifest m)
    {
        if (m.Tensors.Count == 0)
        {
            throw new WeightTransferException($"manifest of version {m.Version} lists no tensors");
        }

        if (m.ChecksumKind != K2RL.Kernels.WordChecksum.Kind)
        {
            throw new WeightTransferException($"manifest of version {m.Version}: its checksums are " +
                (m.ChecksumKind.Length == 0 ? "of no named kind (a sender from before k2rl named them: XxHash3)" : $"\"{m.ChecksumKind}\"") +
                $"; this receiver verifies {K2RL.Kernels.WordChecksum.Kind} only");
        }

        var dtype = (WeightDtype)(int)m.Tensors[0].Dtype;
        var tensors = new List<TensorSpec>(m.Tensors.Count);
        foreach (var t in m.Tensors)
        {
            if ((WeightDtype)(int)t.Dtype != dtype || !WeightDtypes.IsKnown(dtype))
            {
                throw new WeightTransferException($"manifest of version {m.Version}: tensor {t.Name} has dtype {t.Dtype} " +
                    (WeightDtypes.IsKnown(dtype) ? $"but the others are {dtype.Name()}" : "(unknown; f32 and bf16 are known)"));
            }

            tensors.Add(new TensorSpec(t.Name, t.Shape.ToArray(), t.Offset));
        }

        var buckets = m.Buckets.Select(b => new BucketSpec(b.Offset, b.Count, b.Checksum)).ToList();
        var manifest = new WeightManifest(m.Version, m.ParameterCount, dtype, tensors, buckets);
        manifest.Check();
        return manifest;
    }

    /// <summary>
    /// Refuses a manifest that is inconsistent in itself: a negative version, an unknown dtype, a tensor with a
    /// non-positive dimension or outside the buffer, two tensors overlapping, buckets that do not tile the buffer.
    /// </summary>
    public void Check()
    {
        string at = $"manifest of version {Version}";
        if (Version < 0 || ParameterCount <= 0)
        {
            throw new WeightTransferException($"{at}: version must be ≥ 0 and the buffer non-empty (parameter_count {ParameterCount})");
        }

        if (!WeightDtypes.IsKnown(Dtype))
        {
            throw new WeightTransferException($"{at}: unknown dtype {(int)Dtype} (f32 and bf16 are known)");
        }

        long end = 0;
        foreach (var t in Tensors.OrderBy(t => t.Offset))
        {
            if (t.Shape.Length == 0 || t.Shape.Any(d => d <= 0) || t.Offset < end || t.End > ParameterCount)
            {
                throw new WeightTransferException($"{at}: tensor {t.Name} {t.ShapeText} at offset {t.Offset} has a non-positive dimension, " +
                    $"overlaps the tensor before it or ends past the buffer ({ParameterCount} elements)");
            }

            end = t.End;
        }

        long next = 0;
        for (int i = 0; i < Buckets.Count; i++)
        {
            if (Buckets[i].Offset != next || Buckets[i].Count <= 0)
            {
                throw new WeightTransferException($"{at}: bucket {i} covers [{Buckets[i].Offset}, {Buckets[i].End}); the buckets must tile the buffer from {next}");
            }

            next = Buckets[i].End;
        }

        if (next != ParameterCount)
        {
            throw new WeightTransferException($"{at}: the buckets cover {next} of {ParameterCount} elements");
        }
    }
}
