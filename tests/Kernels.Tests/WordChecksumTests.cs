using System.Runtime.InteropServices;

namespace K2RL.Kernels.Tests;

/// <summary>
/// The checkpoint engine's bucket checksum: the vector loops against the definition (S = Σ w_p, T = Σ (p + 1)·w_p over
/// little-endian 32-bit words), any split and order of a stream giving the same value, the fused copies writing
/// exactly their input at every alignment (vector loops and the scalar ones), and the corruptions it must always see.
/// </summary>
public class WordChecksumTests
{
    // The definition, one word at a time.
    private static (ulong Sum, ulong Weighted) Reference(ReadOnlySpan<byte> bytes)
    {
        ulong s = 0, t = 0;
        for (int p = 0; p * 4 < bytes.Length; p++)
        {
            ulong w = 0;
            for (int b = 0; b < 4 && (p * 4) + b < bytes.Length; b++)
            {
                w |= (ulong)bytes[(p * 4) + b] << (8 * b);
            }

            s += w;
            t += ((ulong)p + 1) * w;
        }

        return (s, t);
    }

    private static byte[] RandomBytes(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void SumsFollowTheDefinitionAtEveryLengthAndOffset(int width) => TestUtil.WithWidth(width, () =>
    {
        var data = RandomBytes(20_100, 1);
        foreach (int n in Enumerable.Range(0, 80).Concat([255, 256, 257, 4095, 4096, 4099, 19_993]))
        {
            foreach (int offset in new[] { 0, 1, 2, 3, 5, 32 })
            {
                var span = data.AsSpan(offset, n);
                var c = default(WordChecksum);
                c.Add(span, 0);
                Assert.Equal(Reference(span), c.Sums);
            }
        }
    });

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void AnySplitInAnyOrderGivesTheSameChecksum(int width) => TestUtil.WithWidth(width, () =>
    {
        var data = RandomBytes(50_001, 2);
        ulong whole = WordChecksum.Of(data);
        var rng = new Random(3);
        for (int trial = 0; trial < 20; trial++)
        {
            var cuts = Enumerable.Range(0, rng.Next(1, 12)).Select(_ => rng.Next(0, data.Length)).Append(0).Append(data.Length).Distinct().Order().ToList();
            var parts = cuts.Zip(cuts.Skip(1)).OrderBy(_ => rng.Next()).ToList();
            var c = default(WordChecksum);
            foreach (var (from, to) in parts)
            {
                c.Add(data.AsSpan(from, to - from), from);
            }

            Assert.Equal(whole, c.Finish(data.Length));
        }
    });

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void TheFusedCopyWritesItsInputAndSumsItAtEveryAlignment(int width) => TestUtil.WithWidth(width, () =>
    {
        var data = RandomBytes(70_000, 4);
        foreach (int n in new[] { 0, 7, 4095, 4096, 65_536, 65_539 })
        {
            foreach (int srcOffset in new[] { 0, 1, 4, 12 })
            {
                foreach (int dstOffset in new[] { 0, 3, 4, 16, 28 })
                {
                    foreach (long at in new long[] { 0, 2, 4, 1_000_000 })
                    {
                        var src = data.AsSpan(srcOffset, n);
                        var dst = new byte[n + 64];
                        var c = default(WordChecksum);
                        c.CopyAndAdd(src, dst.AsSpan(dstOffset, n), at);
                        Assert.True(src.SequenceEqual(dst.AsSpan(dstOffset, n)), $"copy n={n} src+{srcOffset} dst+{dstOffset}");
                        Assert.All(dst.AsSpan(0, dstOffset).ToArray().Concat(dst.AsSpan(dstOffset + n).ToArray()), b => Assert.Equal(0, b));
                        var r = default(WordChecksum);
                        r.Add(src, at);
                        Assert.Equal(r.Sums, c.Sums);
                    }
                }
            }
        }
    });

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void TheFusedWideningIsExactAndSumsTheBf16Bytes(int width) => TestUtil.WithWidth(width, () =>
    {
        var bytes = RandomBytes(2 * 40_000, 5);
        var all = MemoryMarshal.Cast<byte, ushort>(bytes);
        foreach (int n in new[] { 0, 5, 2047, 2048, 30_001 })
        {
            foreach (int srcOffset in new[] { 0, 1, 3 })
            {
                foreach (int dstOffset in new[] { 0, 1, 2, 5 })
                {
                    foreach (long at in new long[] { 0, 2, 6 })
                    {
                        var src = all.Slice(srcOffset, n);
                        var dst = new float[n + 16];
                        var c = default(WordChecksum);
                        c.WidenBf16AndAdd(src, dst.AsSpan(dstOffset, n), at);
                        for (int i = 0; i < n; i++)
                        {
                            Assert.Equal((uint)src[i] << 16, BitConverter.SingleToUInt32Bits(dst[dstOffset + i]));
                        }

                        var r = default(WordChecksum);
                        r.Add(MemoryMarshal.AsBytes(src), at);
                        Assert.Equal(r.Sums, c.Sums);
                    }
                }
            }
        }
    });

    [Fact]
    public void OneFlippedBitTwoSwappedWordsOrALostTailChangeIt()
    {
        var data = RandomBytes(1 << 20, 6);
        ulong sum = WordChecksum.Of(data);
        var rng = new Random(7);
        for (int trial = 0; trial < 200; trial++)
        {
            var bad = (byte[])data.Clone();
            bad[rng.Next(bad.Length)] ^= (byte)(1 << rng.Next(8));
            Assert.NotEqual(sum, WordChecksum.Of(bad));

            // the top bit of two words an even distance apart: equal plain sums, different weighted ones
            bad = (byte[])data.Clone();
            int p = rng.Next(bad.Length / 8) * 2, q = p + (2 * rng.Next(1, 100));
            bad[(4 * p) + 3] ^= 0x80;
            bad[Math.Min(4 * q, bad.Length - 4) + 3] ^= 0x80;
            Assert.NotEqual(sum, WordChecksum.Of(bad));
        }

        var swapped = (byte[])data.Clone();
        int at = Enumerable.Range(400, 100).First(i => data[i] != data[i + 4]);
        (swapped[at], swapped[at + 4]) = (swapped[at + 4], swapped[at]);
        Assert.NotEqual(sum, WordChecksum.Of(swapped));
        Assert.NotEqual(sum, WordChecksum.Of(data.AsSpan(0, data.Length - 4)));
        var zeros = new byte[64];
        Assert.NotEqual(WordChecksum.Of(zeros), WordChecksum.Of(zeros.AsSpan(0, 60)));   // the length is part of it
    }
}
