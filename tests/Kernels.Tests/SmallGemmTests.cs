using K2RL.Kernels;

namespace K2RL.Kernels.Tests;

/// <summary>
/// Decode's few-row products against their scalar twins at every width: the reduction (NT) or the columns (NN)
/// swept 0..256, the rows 0..9, strided views with sentinel margins; the bf16 product bit-identical to the fp32 one
/// over the rounded rows.
/// </summary>
public class SmallGemmTests
{
    private const float Rtol = 1e-5f;

    private static float Atol(int k) => 2e-6f * (k + 1); // GemmTests' tolerance

    /// <summary>(m, n, k) for the reduction sweep and the row/column sweeps.</summary>
    private static IEnumerable<(int M, int N, int K)> Shapes(bool sweepColumns)
    {
        for (int e = 0; e <= 256; e++)
        {
            yield return sweepColumns ? (5, e, 3) : (5, 3, e);
        }

        foreach (int r in Enumerable.Range(0, 10))
        {
            yield return (r, 7, 37);
            yield return (r, 33, 16);
        }

        yield return (4, 9, 1000);
        yield return (1, 300, 80);
    }

    private static (Guarded A, Guarded B, Guarded C, float[] C0) Operands(int m, int n, int k, int lda, int ldb, int ldc,
        int bRows, int bCols, int seed)
    {
        int aLen = m == 0 ? 0 : (m - 1) * lda + k;
        int bLen = bRows == 0 ? 0 : (bRows - 1) * ldb + bCols;
        int cLen = m == 0 ? 0 : (m - 1) * ldc + n;
        var c0 = TestUtil.Random(cLen, seed + 2);
        return (new Guarded(aLen, TestUtil.Random(aLen, seed)), new Guarded(bLen, TestUtil.Random(bLen, seed + 1)),
            new Guarded(cLen, c0), c0);
    }

    [Theory]
    [MemberData(nameof(TestUtil.Widths), MemberType = typeof(TestUtil))]
    public void MultiplyNTMatchesTheScalarTwin(int width)
    {
        TestUtil.WithWidth(width, () =>
        {
            int seed = 1;
            foreach (var (m, n, k) in Shapes(sweepColumns: false))
            {
                int lda = k + seed % 3, ldb = k + 5, ldc = n + 2;
                var (a, b, c, c0) = Operands(m, n, k, lda, ldb, ldc, n, k, seed++);
                var want = (float[])c0.Clone();
                ScalarKernels.Gemm(GemmOp.NT, want, ldc, a.Span, lda, b.Span, ldb, m, n, k, accumulate: false);
                SmallGemm.MultiplyNT(c.Span, ldc, a.Span, lda, b.Span, ldb, m, n, k);
                TestUtil.Close(want, c.Span, Rtol, Atol(k), $"NT m={m} n={n} k={k}");
                a.AssertMarginsIntact();
                b.AssertMarginsIntact();
                c.AssertMarginsIntact();
            }
        });
    }

    [Theory]
    [MemberData(nameof(TestUtil.Widths), MemberType = typeof(TestUtil))]
    public void MultiplyAddNNMatchesTheScalarTwin(int width)
    {
        TestUtil.WithWidth(width, () =>
        {
            int seed = 1000;
            foreach (var (m, n, k) in Shapes(sweepColumns: true).Concat(Enumerable.Range(0, 40).Select(k => (6, 24, k))))
            {
                int lda = k + 1, ldb = n + seed % 4, ldc = n + 3;
                var (a, b, c, c0) = Operands(m, n, k, lda, ldb, ldc, k, n, seed++);
                var want = (float[])c0.Clone();
                ScalarKernels.Gemm(GemmOp.NN, want, ldc, a.Span, lda, b.Span, ldb, m, n, k, accumulate: true);
                SmallGemm.MultiplyAddNN(c.Span, ldc, a.Span, lda, b.Span, ldb, m, n, k);
                TestUtil.Close(want, c.Span, Rtol, Atol(k), $"NN m={m} n={n} k={k}");
                a.AssertMarginsIntact();
                b.AssertMarginsIntact();
                c.AssertMarginsIntact();
            }
        });
    }

    /// <summary>
    /// The bf16 product reads rows packed by PackBf16Row and gives exactly the bits of the fp32 product over the same
    /// rows rounded to bf16 at the same width (whole 32-value chunks, in-order tails, a last vector overlapping the
    /// last chunk), and agrees with its own scalar twin.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestUtil.Widths), MemberType = typeof(TestUtil))]
    public void Bf16MultiplyNTIsTheFp32ProductOverTheRoundedRows(int width)
    {
        TestUtil.WithWidth(width, () =>
        {
            int seed = 2000;
            foreach (var (m, n, k) in Shapes(sweepColumns: false))
            {
                int lda = k + 3, ldb = k + 8, ldc = n + 2;
                var (a, _, _, _) = Operands(m, n, k, lda, ldb, ldc, n, k, seed);
                var b = TestUtil.Random(n * ldb, seed++ + 1);
                var packed = new ushort[n * ldb];
                var rounded = new float[n * ldb];
                for (int j = 0; j < n; j++)
                {
                    SmallGemm.PackBf16Row(b.AsSpan(j * ldb, k), packed.AsSpan(j * ldb, k));
                    SmallGemm.UnpackBf16Row(packed.AsSpan(j * ldb, k), rounded.AsSpan(j * ldb, k));
                    for (int p = 0; p < k; p++)
                    {
                        Assert.Equal(Bf16.Round(b[j * ldb + p]), rounded[j * ldb + p]);
                    }
                }

                var fp32 = new float[m * ldc];
                var bf16 = new float[m * ldc];
                var twin = new float[m * ldc];
                SmallGemm.MultiplyNT(fp32, ldc, a.Span, lda, rounded, ldb, m, n, k);
                SmallGemm.MultiplyNT(bf16, ldc, a.Span, lda, packed, ldb, m, n, k);
                ScalarKernels.MultiplyNTBf16(twin, ldc, a.Span, lda, packed, ldb, m, n, k);
                Assert.True(fp32.AsSpan().SequenceEqual(bf16), $"bf16 m={m} n={n} k={k}: not the fp32 bits");
                TestUtil.Close(twin, bf16, Rtol, Atol(k), $"bf16 m={m} n={n} k={k}");
            }
        });
    }

    [Fact]
    public void TheBf16TwinIsTheScalarGemmOverTheWidenedRows()
    {
        const int m = 3, n = 4, k = 77;
        var a = TestUtil.Random(m * k, 1);
        var b = TestUtil.Random(n * k, 2);
        var packed = new ushort[n * k];
        var rounded = new float[n * k];
        for (int j = 0; j < n; j++)
        {
            SmallGemm.PackBf16Row(b.AsSpan(j * k, k), packed.AsSpan(j * k, k));
            SmallGemm.UnpackBf16Row(packed.AsSpan(j * k, k), rounded.AsSpan(j * k, k));
        }

        var want = new float[m * n];
        var got = new float[m * n];
        ScalarKernels.Gemm(GemmOp.NT, want, n, a, k, rounded, k, m, n, k, accumulate: false);
        ScalarKernels.MultiplyNTBf16(got, n, a, k, packed, k, m, n, k);
        Assert.Equal(want, got);
    }

    /// <summary>A row's bits do not depend on the rows beside it (decode batches sequences), at any width.</summary>
    [Theory]
    [MemberData(nameof(TestUtil.Widths), MemberType = typeof(TestUtil))]
    public void ARowsBitsDoNotDependOnTheOtherRows(int width)
    {
        TestUtil.WithWidth(width, () =>
        {
            const int m = 6, n = 21, k = 45;
            var a = TestUtil.Random(m * k, 3);
            var bt = TestUtil.Random(n * k, 4);
            var c0 = TestUtil.Random(m * n, 5);
            var all = new float[m * n];
            var nn = (float[])c0.Clone();
            SmallGemm.MultiplyNT(all, n, a, k, bt, k, m, n, k);
            SmallGemm.MultiplyAddNN(nn, n, a, k, bt, n, m, n, k);
            for (int i = 0; i < m; i++)
            {
                var one = new float[n];
                var oneNN = c0.AsSpan(i * n, n).ToArray();
                SmallGemm.MultiplyNT(one, n, a.AsSpan(i * k, k), k, bt, k, 1, n, k);
                SmallGemm.MultiplyAddNN(oneNN, n, a.AsSpan(i * k, k), k, bt, n, 1, n, k);
                Assert.True(all.AsSpan(i * n, n).SequenceEqual(one), $"NT row {i}");
                Assert.True(nn.AsSpan(i * n, n).SequenceEqual(oneNN), $"NN row {i}");
            }
        });
    }

    [Fact]
    public void MismatchedShapesThrowNamingThem()
    {
        var c = new float[4 * 5];
        var e = Assert.Throws<ArgumentException>(() => SmallGemm.MultiplyNT(c, 5, new float[4 * 8], 8, new float[5 * 8 - 1], 8, 4, 5, 8));
        Assert.Contains("NT m=4 n=5 k=8", e.Message);
        Assert.Equal("B", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => SmallGemm.MultiplyNT(c, 5, new float[4 * 8], 8, new ushort[5 * 7], 8, 4, 5, 8));
        Assert.Equal("B", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => SmallGemm.MultiplyAddNN(c, 4, new float[4 * 8], 8, new float[8 * 5], 5, 4, 5, 8));
        Assert.Contains("leading dimension 4 < cols 5", e.Message);
        Assert.Throws<ArgumentException>(() => SmallGemm.PackBf16Row(new float[33], new ushort[32]));
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
