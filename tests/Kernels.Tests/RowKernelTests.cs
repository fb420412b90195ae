using K2RL.Kernels;

namespace K2RL.Kernels.Tests;

/// <summary>RMSNorm, softmax, log-softmax and cross-entropy: against the scalar twins, finite differences, bad input.</summary>
public class RowKernelTests
{
    private static readonly int[] RowCounts = { 0, 1, 3 };

    private static IEnumerable<int> Lengths() => Enumerable.Range(0, 257).Concat(new[] { 511, 1000, 4099 });

    [Theory]
    [MemberData(nameof(TestUtil.Widths), MemberType = typeof(TestUtil))]
    public void RmsNormMatchesTwin(int width) => TestUtil.WithWidth(width, () =>
    {
        foreach (int C in Lengths())
        {
            foreach (int rows in RowCounts)
            {
                int seed = C * 7 + rows;
                var x = TestUtil.Random(rows * C, seed, 3f);
                var w = TestUtil.Random(C, seed + 1);
                var dOut = TestUtil.Random(rows * C, seed + 2);
                var (y0, r0) = (new float[rows * C], new float[rows]);
                ScalarKernels.RmsNormForward(y0, r0, x, w, rows, C, 1e-6f);
                var (y, rs) = (new Guarded(rows * C), new Guarded(rows));
                RmsNorm.Forward(y.Span, rs.Span, x, w, rows, C, 1e-6f);
                TestUtil.Close(y0, y.Span, 1e-5f, 1e-6f, $"rmsnorm y C={C}");
                TestUtil.Close(r0, rs.Span, 1e-5f, 0, $"rmsnorm rstd C={C}");

                var (dx0, dw0) = (new float[rows * C], TestUtil.Random(C, seed + 3));
                var dw = new Guarded(C, dw0);
                ScalarKernels.RmsNormBackward(dx0, dw0, dOut, x, w, r0, rows, C);
                var dx = new Guarded(rows * C);
                RmsNorm.Backward(dx.Span, dw.Span, dOut, x, w, r0, rows, C);
                TestUtil.Close(dx0, dx.Span, 1e-4f, 1e-5f, $"rmsnorm dx C={C}");
                TestUtil.Close(dw0, dw.Span, 1e-4f, 1e-5f, $"rmsnorm dw C={C}");
                foreach (var g in new[] { y, rs, dx, dw })
                {
                    g.AssertMarginsIntact();
                }
            }
        }
    });

    [Fact]
    public void RmsNormBackwardMatchesFiniteDifferences()
    {
        const int rows = 3, C = 11;
        const double eps = 1e-5;
        var x = TestUtil.Random(rows * C, 1, 2f);
        var w = TestUtil.Random(C, 2);
        var dOut = TestUtil.Random(rows * C, 3);
        var (y, rstd) = (new float[rows * C], new float[rows]);
        RmsNorm.Forward(y, rstd, x, w, rows, C, (float)eps);
        var (dx, dw) = (new float[rows * C], new float[C]);
        RmsNorm.Backward(dx, dw, dOut, x, w, rstd, rows, C);

        double Loss(double[] xd, double[] wd)
        {
            double loss = 0;
            for (int r = 0; r < rows; r++)
            {
                double ss = 0;
                for (int i = 0; i < C; i++)
                {
                    ss += xd[r * C + i] * xd[r * C + i];
                }

                double s = 1 / Math.Sqrt(ss / C + eps);
                for (int i = 0; i < C; i++)
                {
                    loss += dOut[r * C + i] * xd[r * C + i] * s * wd[i];
                }
            }

            return loss;
        }

        TestUtil.CheckGradients(x, w, Loss, dx, dw, 1e-3, 1e-4, "rmsnorm (inp, weight)");
    }

    [Theory]
    [MemberData(nameof(TestUtil.Widths), MemberType = typeof(TestUtil))]
    public void SoftmaxMatchesTwin(int width) => TestUtil.WithWidth(width, () =>
    {
        foreach (int cols in Lengths().Where(c => c <= 1000))
        {
            foreach (bool causal in new[] { false, true })
            {
                int rows = causal ? Math.Min(cols, 5) + 1 : 2;
                int offset = causal ? cols / 3 - 1 : 0;
                int seed = cols * 3 + (causal ? 1 : 0);
                var x = TestUtil.Random(rows * cols, seed, 8f);
                var p0 = new float[rows * cols];
                float m0 = ScalarKernels.SoftmaxForward(p0, x, rows, cols, 0.37f, causal, offset);
                var p = new Guarded(rows * cols);
                float m = Softmax.Forward(p.Span, x, rows, cols, 0.37f, causal, offset);
                Assert.Equal(m0, m);
                TestUtil.Close(p0, p.Span, 1e-5f, 1e-7f, $"softmax cols={cols} causal={causal}");

                var dp = TestUtil.Random(rows * cols, seed + 1);
                var d0 = new float[rows * cols];
                ScalarKernels.SoftmaxBackward(d0, dp, p0, rows, cols, 0.37f);
                var d = new Guarded(rows * cols);
                Softmax.Backward(d.Span, dp, p0, rows, cols, 0.37f);
                TestUtil.Close(d0, d.Span, 1e-4f, 1e-6f, $"softmax backward cols={cols}");

                var l0 = new float[rows * cols];
                ScalarKernels.LogSoftmaxForward(l0, x, rows, cols);
                var l = new Guarded(rows * cols);
                Softmax.LogSoftmax(l.Span, x, rows, cols);
                TestUtil.Close(l0, l.Span, 1e-5f, 1e-5f, $"log-softmax cols={cols}");
                p.AssertMarginsIntact();
                d.AssertMarginsIntact();
                l.AssertMarginsIntact();
            }
        }
    });

    [Fact]
    public void SoftmaxReturnsTheLargestUnmaskedScaledLogit()
    {
        // Row 0 sees only column 0; the masked 100 must not count.
        float[] x = { 1f, 100f, 2f, 3f };
        var p = new float[4];
        float max = Softmax.Forward(p, x, 2, 2, 0.5f, causal: true);
        Assert.Equal(1.5f, max);
        Assert.Equal(new[] { 1f, 0f }, p[..2]);
    }

    [Fact]
    public void SoftmaxBackwardMatchesFiniteDifferences()
    {
        const int rows = 4, cols = 7, offset = 1;
        const float scale = 0.7f;
        var x = TestUtil.Random(rows * cols, 5, 3f);
        var dp = TestUtil.Random(rows * cols, 6);
        var p = new float[rows * cols];
        Softmax.Forward(p, x, rows, cols, scale, causal: true, offset);
        var d = new float[rows * cols];
        Softmax.Backward(d, dp, p, rows, cols, scale);

        double Loss(double[] xd)
        {
            double loss = 0;
            for (int r = 0; r < rows; r++)
            {
                int visible = Math.Min(cols, r + offset + 1);
                double max = double.NegativeInfinity, sum = 0;
                for (int j = 0; j < visible; j++)
                {
                    max = Math.Max(max, xd[r * cols + j] * scale);
                }

                for (int j = 0; j < visible; j++)
                {
                    sum += Math.Exp(xd[r * cols + j] * scale - max);
                }

                for (int j = 0; j < visible; j++)
                {
                    loss += dp[r * cols + j] * Math.Exp(xd[r * cols + j] * scale - max) / sum;
                }
            }

            return loss;
        }

        TestUtil.Close(TestUtil.NumericGradient(TestUtil.ToDouble(x), Loss), d, 1e-3, 1e-5, "softmax dlogits vs FD");
    }

    [Theory]
    [MemberData(nameof(TestUtil.Widths), MemberType = typeof(TestUtil))]
    public void CrossEntropyMatchesTwin(int width) => TestUtil.WithWidth(width, () =>
    {
        foreach (int V in Lengths().Where(v => v > 0))
        {
            const int rows = 3;
            var x = TestUtil.Random(rows * V, V, 6f);
            int[] t = { V - 1, -1, V / 2 };
            var dLoss = TestUtil.Random(rows, V + 1);
            var (l0, s0) = (new float[rows], new float[rows]);
            ScalarKernels.CrossEntropyForward(l0, s0, x, t, rows, V);
            var (l, s) = (new Guarded(rows), new Guarded(rows));
            CrossEntropy.Forward(l.Span, s.Span, x, t, rows, V);
            TestUtil.Close(l0, l.Span, 1e-5f, 1e-5f, $"ce loss V={V}");
            TestUtil.Close(s0, s.Span, 1e-5f, 1e-5f, $"ce lse V={V}");
            var d0 = new float[rows * V];
            ScalarKernels.CrossEntropyBackward(d0, dLoss, x, s0, t, rows, V);
            var d = new Guarded(rows * V);
            CrossEntropy.Backward(d.Span, dLoss, x, s0, t, rows, V);
            TestUtil.Close(d0, d.Span, 1e-5f, 1e-6f, $"ce dlogits V={V}");
            l.AssertMarginsIntact();
            s.AssertMarginsIntact();
            d.AssertMarginsIntact();
        }
    });

    [Fact]
    public void CrossEntropyBackwardMatchesFiniteDifferences()
    {
        const int rows = 3, V = 9;
        var x = TestUtil.Random(rows * V, 9, 3f);
        int[] t = { 4, 0, -1 };
        float[] dLoss = { 0.5f, -1.25f, 2f };
        var (l, s) = (new float[rows], new float[rows]);
        CrossEntropy.Forward(l, s, x, t, rows, V);
        var d = new float[rows * V];
        CrossEntropy.Backward(d, dLoss, x, s, t, rows, V);

        double Loss(double[] xd)
        {
            double loss = 0;
            for (int r = 0; r < rows; r++)
            {
                if (t[r] < 0)
                {
                    continue;
                }

                double sum = 0;
                for (int j = 0; j < V; j++)
                {
                    sum += Math.Exp(xd[r * V + j]);
                }

                loss += dLoss[r] * (Math.Log(sum) - xd[r * V + t[r]]);
            }

            return loss;
        }

        TestUtil.Close(TestUtil.NumericGradient(TestUtil.ToDouble(x), Loss), d, 1e-3, 1e-5, "ce dlogits vs FD");
    }

    [Fact]
    public void BadShapesThrowNamingThem()
    {
        var big = new float[64];
        var e = Assert.Throws<ArgumentException>(() => RmsNorm.Forward(big, big, big, big.AsSpan(0, 7), 2, 8, 1e-6f));
        Assert.Contains("[8]", e.Message);
        e = Assert.Throws<ArgumentException>(() => RmsNorm.Backward(big, big, big.AsSpan(0, 15), big, big, big, 2, 8));
        Assert.Contains("[2, 8]", e.Message);
        e = Assert.Throws<ArgumentException>(() => Softmax.Forward(big.AsSpan(0, 20), big, 3, 7, 1f, false));
        Assert.Contains("[3, 7]", e.Message);
        e = Assert.Throws<ArgumentException>(() => Softmax.Backward(big, big.AsSpan(0, 5), big, 2, 3, 1f));
        Assert.Contains("[2, 3]", e.Message);
        e = Assert.Throws<ArgumentException>(() => Softmax.LogSoftmax(big, big.AsSpan(0, 8), 3, 3));
        Assert.Contains("[3, 3]", e.Message);
        e = Assert.Throws<ArgumentException>(() => CrossEntropy.Forward(big, big, big, new int[1], 2, 4));
        Assert.Contains("[2]", e.Message);
        e = Assert.Throws<ArgumentException>(() => CrossEntropy.Forward(big, big, big, new[] { 0, 4 }, 2, 4));
        Assert.Contains("[0, 4)", e.Message);
        e = Assert.Throws<ArgumentException>(() => CrossEntropy.Backward(big.AsSpan(0, 7), big, big, big, new int[2], 2, 4));
        Assert.Contains("[2, 4]", e.Message);
    }
}
