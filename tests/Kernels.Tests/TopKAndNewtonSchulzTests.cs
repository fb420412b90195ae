using K2RL.Kernels;

namespace K2RL.Kernels.Tests;

public class TopKAndNewtonSchulzTests
{
    [Theory]
    [MemberData(nameof(TestUtil.Widths), MemberType = typeof(TestUtil))]
    public void TopKMatchesTwinWithTiesAndNaN(int width) => TestUtil.WithWidth(width, () =>
    {
        var rng = new Random(3);
        foreach (int n in Enumerable.Range(0, 257))
        {
            const int rows = 4;
            var scores = new float[rows * n];
            for (int i = 0; i < scores.Length; i++)
            {
                // Few distinct values (many ties), some NaN, some ±0.
                int v = rng.Next(12);
                scores[i] = v == 0 ? float.NaN : v == 1 ? -0f : (v - 6) * 0.5f;
            }

            foreach (int k in new[] { 0, 1, 2, 8, n / 2, n }.Where(k => k <= n).Distinct())
            {
                var expected = new int[rows * k];
                ScalarKernels.TopK(expected, scores, rows, n, k);
                var actual = new int[rows * k + 6];
                Array.Fill(actual, -77);
                TopK.Select(actual.AsSpan(3, rows * k), scores, rows, n, k);
                Assert.Equal(expected, actual.AsSpan(3, rows * k).ToArray());
                Assert.All(actual[..3].Concat(actual[^3..]), v => Assert.Equal(-77, v));
            }
        }
    });

    [Fact]
    public void TopKRejectsBadK()
    {
        var e = Assert.Throws<ArgumentException>(() => TopK.Select(new int[8], new float[8], 2, 4, 5));
        Assert.Contains("k = 5", e.Message);
        e = Assert.Throws<ArgumentException>(() => TopK.Select(new int[3], new float[8], 2, 4, 2));
        Assert.Contains("[2, 2]", e.Message);
    }

    [Theory]
    [InlineData(24, 64)]
    [InlineData(64, 24)]
    [InlineData(1, 5)]
    [InlineData(33, 47)]
    public void NewtonSchulzMatchesTwinAndLandsInTheSingularValueBand(int rows, int cols)
    {
        var g = TestUtil.Random(rows * cols, rows * 100 + cols, 0.02f);
        var expected = new float[rows * cols];
        ScalarKernels.NewtonSchulz5(expected, g, rows, cols);
        var actual = new Guarded(rows * cols);
        var ws = new NewtonSchulzWorkspace();
        NewtonSchulz.Orthogonalize(actual.Span, g, rows, cols, ws);
        TestUtil.Close(expected, actual.Span, 1e-3f, 1e-4f, $"ns5 {rows}x{cols}");
        actual.AssertMarginsIntact();

        // Same result again through the reused workspace, and through the per-thread one.
        var again = new float[rows * cols];
        NewtonSchulz.Orthogonalize(again, g, rows, cols, ws);
        Assert.Equal(actual.ToArray(), again);
        NewtonSchulz.Orthogonalize(again, g, rows, cols);
        Assert.Equal(actual.ToArray(), again);

        if (Math.Min(rows, cols) > 1 && Math.Max(rows, cols) >= 2 * Math.Min(rows, cols))
        {
            foreach (double sigma in K2RL.Tests.Shared.Spectral.SingularValues(actual.ToArray(), rows, cols))
            {
                Assert.InRange(sigma, 0.5, 1.5);
            }
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(5, 3)]
    [InlineData(17, 300)]   // k over one 256-deep slice
    [InlineData(128, 256)]  // an expert matrix's X·Xᵀ
    [InlineData(128, 128)]  // its A·Aᵀ
    [InlineData(151, 40)]   // m over one 144-row block
    public void SymmetricProductIsTheNtGemmBitForBit(int m, int k)
    {
        foreach (int width in new[] { 0, 128 })
        {
            TestUtil.WithWidth(width, () =>
            {
                int ldx = k + 3, ldc = m + 2;
                var x = TestUtil.Random(m * ldx, m * 31 + k, 1f);
                var expected = new float[m * ldc];
                Gemm.Multiply(GemmOp.NT, expected, ldc, x, ldx, x, ldx, m, m, k, accumulate: false, maxThreads: 1);
                foreach (int threads in new[] { 1, 2 })
                {
                    var actual = new Guarded(m * ldc);
                    actual.Span.Fill(7f); // padding columns stay untouched, every element of C is written
                    Gemm.SymmetricProduct(actual.Span, ldc, x, ldx, m, k, threads);
                    for (int i = 0; i < m; i++)
                    {
                        Assert.Equal(expected.AsSpan(i * ldc, m).ToArray(), actual.Span.Slice(i * ldc, m).ToArray());
                        Assert.All(actual.Span.Slice(i * ldc + m, ldc - m).ToArray(), v => Assert.Equal(7f, v));
                    }

                    actual.AssertMarginsIntact();
                }
            });
        }
    }

    [Theory]
    [InlineData(128, 256)]
    [InlineData(256, 128)]
    [InlineData(150, 197)]
    public void NewtonSchulzIsBitIdenticalWhateverTheThreadCount(int rows, int cols)
    {
        var g = TestUtil.Random(rows * cols, rows + cols, 0.02f);
        var one = new float[rows * cols];
        NewtonSchulz.Orthogonalize(one, g, rows, cols, new NewtonSchulzWorkspace(), 5, maxThreads: 1);
        var many = new float[rows * cols];
        NewtonSchulz.Orthogonalize(many, g, rows, cols, new NewtonSchulzWorkspace(), 5, maxThreads: 4);
        Assert.Equal(one, many);
        var expected = new float[rows * cols];
        ScalarKernels.NewtonSchulz5(expected, g, rows, cols);
        TestUtil.Close(expected, one, 1e-3f, 1e-4f, $"ns5 {rows}x{cols}");
        Assert.Throws<ArgumentException>(() => NewtonSchulz.Orthogonalize(many, g, rows, cols, new NewtonSchulzWorkspace(), 5, maxThreads: 0));
    }

    [Fact]
    public void NewtonSchulzRejectsShortBuffers()
    {
        var e = Assert.Throws<ArgumentException>(() => NewtonSchulz.Orthogonalize(new float[11], new float[12], 3, 4));
        Assert.Contains("[3, 4]", e.Message);
    }

}
