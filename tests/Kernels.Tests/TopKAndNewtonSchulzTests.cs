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
            foreach (double sigma in SingularValues(actual.ToArray(), rows, cols))
            {
                Assert.InRange(sigma, 0.5, 1.5);
            }
        }
    }

    [Fact]
    public void NewtonSchulzRejectsShortBuffers()
    {
        var e = Assert.Throws<ArgumentException>(() => NewtonSchulz.Orthogonalize(new float[11], new float[12], 3, 4));
        Assert.Contains("[3, 4]", e.Message);
    }

    /// <summary>Singular values of X [rows, cols] from the eigenvalues of the smaller Gram matrix (cyclic Jacobi, double).</summary>
    private static double[] SingularValues(float[] x, int rows, int cols)
    {
        bool wide = rows <= cols;
        int m = wide ? rows : cols, n = wide ? cols : rows;
        double At(int i, int p) => wide ? x[i * cols + p] : x[p * cols + i];
        var a = new double[m, m];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < m; j++)
            {
                for (int p = 0; p < n; p++)
                {
                    a[i, j] += At(i, p) * At(j, p);
                }
            }
        }

        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0;
            for (int p = 0; p < m; p++)
            {
                for (int q = p + 1; q < m; q++)
                {
                    off += a[p, q] * a[p, q];
                    if (Math.Abs(a[p, q]) < 1e-15)
                    {
                        continue;
                    }

                    double theta = (a[q, q] - a[p, p]) / (2 * a[p, q]);
                    double t = Math.Sign(theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    if (theta == 0)
                    {
                        t = 1;
                    }

                    double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
                    for (int k = 0; k < m; k++)
                    {
                        double akp = a[k, p], akq = a[k, q];
                        a[k, p] = c * akp - s * akq;
                        a[k, q] = s * akp + c * akq;
                    }

                    for (int k = 0; k < m; k++)
                    {
                        double apk = a[p, k], aqk = a[q, k];
                        a[p, k] = c * apk - s * aqk;
                        a[q, k] = s * apk + c * aqk;
                    }
                }
            }

            if (off < 1e-24)
            {
                break;
            }
        }

        return Enumerable.Range(0, m).Select(i => Math.Sqrt(Math.Max(0, a[i, i]))).ToArray();
    }
}
