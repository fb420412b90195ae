using System.Runtime.InteropServices;

namespace K2RL.CheckpointEngine.Tests;

/// <summary>Test buffers: random weights of a synthetic layout, and the digest the child receivers report.</summary>
internal static class Weights
{
    public static float[] Random(long count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, checked((int)count)).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
    }

    /// <summary>As <c>k2rl ckpt receive</c> reports it.</summary>
    public static string Digest(float[] parameters) => WireCodec.Checksum(MemoryMarshal.AsBytes(parameters.AsSpan())).ToString("x16");

    /// <summary>What a receiver of <paramref name="parameters"/> shipped as bf16 holds.</summary>
    public static float[] RoundedToBf16(float[] parameters) => parameters.Select(v => K2RL.Kernels.Bf16.Round(v)).ToArray();

    /// <summary>Every bucket into <paramref name="assembler"/> in the given order.</summary>
    public static void Feed(WeightAssembler assembler, EncodedVersion v, IEnumerable<int>? order = null)
    {
        assembler.Begin(v.Manifest);
        foreach (int i in order ?? Enumerable.Range(0, v.BucketCount))
        {
            Assert.Equal(BucketResult.Taken, assembler.Accept(v.Manifest.Version, i, v.Bucket(i).Span));
        }
    }
}
