using System.Runtime.InteropServices;
using K2RL.Kernels;

namespace K2RL.CheckpointEngine.Tests;

public sealed class WireCodecTests
{
    [Fact]
    public void Bf16EncodingIsBitExactToTheKernelsScalarOracleAtEveryLength()
    {
        var rng = new Random(3);
        foreach (int n in Enumerable.Range(0, 257).Concat([1000, 4099, 65_537]))
        {
            var values = Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() - 0.5) * Math.Pow(10, rng.Next(-30, 30)))).ToArray();
            var got = new ushort[n];
            WireCodec.ToBf16(values, got);
            for (int i = 0; i < n; i++)
            {
                Assert.True(Bf16.FromFloat(values[i]) == got[i], $"n={n} i={i} value={values[i]}: {got[i]:x4} vs oracle {Bf16.FromFloat(values[i]):x4}");
            }

            var back = new float[n];
            WireCodec.FromBf16(got, back);
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(Bf16.ToFloat(got[i]), back[i]);
            }
        }
    }

    [Fact]
    public void Bf16EdgeValuesRoundToNearestEvenAndKeepNaNInfinityAndSign()
    {
        float[] edges =
        [
            0f, -0f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, -float.NaN, float.MaxValue, float.MinValue,
            float.Epsilon, BitConverter.Int32BitsToSingle(0x3F808000), BitConverter.Int32BitsToSingle(0x3F818000),
            BitConverter.Int32BitsToSingle(0x3F808001), BitConverter.Int32BitsToSingle(0x7F7FFFFF), 1f, -1f,
        ];
        var values = Enumerable.Repeat(edges, 8).SelectMany(e => e).ToArray();   // long enough for the vector path
        var got = new ushort[values.Length];
        WireCodec.ToBf16(values, got);
        for (int i = 0; i < values.Length; i++)
        {
            Assert.Equal(Bf16.FromFloat(values[i]), got[i]);
        }

        Assert.Equal((ushort)0x3F80, got[9]);    // a tie rounds to the even mantissa (down)
        Assert.Equal((ushort)0x3F82, got[10]);   // a tie rounds to the even mantissa (up)
        Assert.True(float.IsNaN(Bf16.ToFloat(got[4])));
    }

    [Fact]
    public void EncodeDecodeRoundTripsF32ExactlyAndRefusesAWrongLength()
    {
        float[] values = [1.5f, -2.25f, 3e-20f, 7e30f];
        var bytes = new byte[16];
        WireCodec.Encode(values, WeightDtype.F32, bytes);
        var back = new float[4];
        WireCodec.Decode(bytes, WeightDtype.F32, back);
        Assert.Equal(values, back);
        Assert.Throws<ArgumentException>(() => WireCodec.Encode(values, WeightDtype.Bf16, bytes));
        Assert.Throws<ArgumentException>(() => WireCodec.Decode(bytes.AsSpan(0, 15), WeightDtype.F32, back));
    }

    [Fact]
    public void TheChecksumSeesOneFlippedBit()
    {
        var bytes = MemoryMarshal.AsBytes(Enumerable.Range(0, 1000).Select(i => (float)i).ToArray().AsSpan()).ToArray();
        ulong sum = WireCodec.Checksum(bytes);
        bytes[1234] ^= 0x10;
        Assert.NotEqual(sum, WireCodec.Checksum(bytes));
    }
}
