using K2RL.Kernels;
using K2RL.Model.Layers;

namespace K2RL.Model.Tests;

/// <summary>Decode's few-row products agree with the packed GEMM, with leading dimensions and odd shapes.</summary>
public class DecodeSmallGemmTests
{
    private static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    [Theory]
    [InlineData(4, 16, 80)]
    [InlineData(7, 33, 64)]
    [InlineData(3, 5, 12)]  // k not a multiple of 8: the scalar-dot path
    public void MultiplyNTMatchesGemm(int m, int n, int k)
    {
        int lda = k + 3, ldb = k + 5, ldc = n + 2;
        var a = Random(m * lda, 1);
        var b = Random(n * ldb, 2);
        var want = new float[m * ldc];
        var got = new float[m * ldc];
        Gemm.Multiply(GemmOp.NT, want, ldc, a, lda, b, ldb, m, n, k, false, 1);
        SmallGemm.MultiplyNT(got, ldc, a, lda, b, ldb, m, n, k);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                Assert.True(Math.Abs(want[i * ldc + j] - got[i * ldc + j]) <= 1e-4f, $"[{i},{j}] {want[i * ldc + j]} vs {got[i * ldc + j]}");
            }
        }
    }

    [Theory]
    [InlineData(4, 64, 16)]
    [InlineData(6, 32, 7)]
    [InlineData(5, 12, 3)]  // n not a multiple of 8: the TensorPrimitives path
    public void MultiplyAddNNMatchesGemm(int m, int n, int k)
    {
        int lda = k + 1, ldb = n + 16, ldc = n + 8;
        var a = Random(m * lda, 3);
        var b = Random(k * ldb, 4);
        var want = Random(m * ldc, 5);
        var got = (float[])want.Clone();
        Gemm.Multiply(GemmOp.NN, want, ldc, a, lda, b, ldb, m, n, k, true, 1);
        SmallGemm.MultiplyAddNN(got, ldc, a, lda, b, ldb, m, n, k);
        for (int i = 0; i < m * ldc; i++)
        {
            Assert.True(Math.Abs(want[i] - got[i]) <= 1e-4f, $"[{i}] {want[i]} vs {got[i]}");
        }
    }

    /// <summary>
    /// The bf16 product reads rows packed by PackBf16Row and gives exactly the bits of the fp32 product over the
    /// same rows rounded to bf16: whole 16-value chunks, a trailing 8, and the scalar path (k not a multiple of 8).
    /// </summary>
    [Theory]
    [InlineData(4, 128, 256)]
    [InlineData(7, 33, 64)]
    [InlineData(1, 9, 24)]   // one chunk and a tail of 8
    [InlineData(5, 6, 40)]   // two chunks and a tail of 8; one 4-row group and one single row
    [InlineData(3, 5, 12)]   // k not a multiple of 8: the scalar-dot path
    public void Bf16MultiplyNTIsTheFp32ProductOverTheRoundedRows(int m, int n, int k)
    {
        int lda = k + 3, ldb = k + 8, ldc = n + 2;
        var a = Random(m * lda, 6);
        var b = Random(n * ldb, 7);
        var packed = new ushort[n * ldb];
        var rounded = new float[n * ldb];
        for (int j = 0; j < n; j++)
        {
            SmallGemm.PackBf16Row(b.AsSpan(j * ldb, k), packed.AsSpan(j * ldb, k));
            SmallGemm.UnpackBf16Row(packed.AsSpan(j * ldb, k), rounded.AsSpan(j * ldb, k));
            for (int i = 0; i < k; i++)
            {
                Assert.Equal(Bf16.Round(b[j * ldb + i]), rounded[j * ldb + i]);
            }
        }

        var want = new float[m * ldc];
        var got = new float[m * ldc];
        SmallGemm.MultiplyNT(want, ldc, a, lda, rounded, ldb, m, n, k);
        SmallGemm.MultiplyNT(got, ldc, a, lda, packed, ldb, m, n, k);
        Assert.Equal(want, got);
    }

    [Fact]
    public void Bf16RoundsToNearestEvenAndKeepsSpecials()
    {
        float one = 1f, ulp = MathF.Pow(2, -7);
        Assert.Equal(one, Bf16.Round(one + ulp / 2));                      // a tie rounds to the even neighbour (1.0)
        Assert.Equal(one + 2 * ulp, Bf16.Round(one + 3 * ulp / 2));        // a tie rounds to the even neighbour (1 + 2 ulp)
        Assert.Equal(one + ulp, Bf16.Round(one + ulp / 2 + ulp / 64));     // above the tie rounds up
        Assert.Equal(-one, Bf16.Round(-one - ulp / 4));
        Assert.Equal(float.PositiveInfinity, Bf16.Round(float.PositiveInfinity));
        Assert.Equal(float.PositiveInfinity, Bf16.Round(float.MaxValue));   // past the largest bf16: infinity
        Assert.True(float.IsNaN(Bf16.Round(float.NaN)));
        Assert.Equal(0x3F80, Bf16.FromFloat(1f));
        Assert.Equal(1f, Bf16.ToFloat(0x3F80));
    }
}
