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
}
