using K2RL.Kernels;

namespace K2RL.Kernels.Tests;

/// <summary>SwiGLU and RoPE: against the scalar twins (lengths 0..256, in place too), finite differences, bad input.</summary>
public class PointwiseKernelTests
{
    [Theory]
    [MemberData(nameof(TestUtil.Widths), MemberType = typeof(TestUtil))]
    public void SwiGluMatchesTwin(int width) => TestUtil.WithWidth(width, () =>
    {
        foreach (int n in Enumerable.Range(0, 257).Concat(new[] { 1023, 5000 }))
        {
            var g = TestUtil.Random(n, n, 6f);
            var u = TestUtil.Random(n, n + 1, 2f);
            var dOut = TestUtil.Random(n, n + 2);
            var y0 = new float[n];
            ScalarKernels.SwiGluForward(y0, g, u, n);
            var y = new Guarded(n);
            SwiGlu.Forward(y.Span, g, u, n);
            TestUtil.Close(y0, y.Span, 1e-5f, 1e-6f, $"swiglu n={n}");

            var (dg0, du0) = (new float[n], new float[n]);
            ScalarKernels.SwiGluBackward(dg0, du0, dOut, g, u, n);
            var (dg, du) = (new Guarded(n), new Guarded(n));
            SwiGlu.Backward(dg.Span, du.Span, dOut, g, u, n);
            TestUtil.Close(dg0, dg.Span, 1e-5f, 1e-6f, $"swiglu dgate n={n}");
            TestUtil.Close(du0, du.Span, 1e-5f, 1e-6f, $"swiglu dup n={n}");
            y.AssertMarginsIntact();
            dg.AssertMarginsIntact();
            du.AssertMarginsIntact();

            // In place: output aliases gate.
            var inPlace = (float[])g.Clone();
            SwiGlu.Forward(inPlace, inPlace, u, n);
            TestUtil.Close(y0, inPlace, 1e-5f, 1e-6f, $"swiglu in place n={n}");
        }
    });

    [Fact]
    public void SwiGluBackwardMatchesFiniteDifferences()
    {
        const int n = 13;
        var g = TestUtil.Random(n, 1, 4f);
        var u = TestUtil.Random(n, 2, 2f);
        var dOut = TestUtil.Random(n, 3);
        var (dg, du) = (new float[n], new float[n]);
        SwiGlu.Backward(dg, du, dOut, g, u, n);
        double Loss(double[] gd, double[] ud)
        {
            double loss = 0;
            for (int i = 0; i < n; i++)
            {
                loss += dOut[i] * gd[i] / (1 + Math.Exp(-gd[i])) * ud[i];
            }

            return loss;
        }

        TestUtil.CheckGradients(g, u, Loss, dg, du, 1e-4, 1e-6, "swiglu (gate, up)");
    }

    [Theory]
    [MemberData(nameof(TestUtil.Widths), MemberType = typeof(TestUtil))]
    public void RopeMatchesTwin(int width) => TestUtil.WithWidth(width, () =>
    {
        for (int dim = 2; dim <= 256; dim += 2)
        {
            const int rows = 3, maxPos = 50;
            int vecs = dim % 3 + 1, vecStride = dim + 1, offset = dim % 5;
            int rowStride = offset + (vecs - 1) * vecStride + dim + 2;
            var (cos, sin) = Rope.BuildTables(dim, maxPos, 10000);
            int[] pos = { 0, 17, maxPos - 1 };
            foreach (bool inverse in new[] { false, true })
            {
                var x0 = TestUtil.Random(rows * rowStride, dim + (inverse ? 1 : 0), 3f);
                var expected = (float[])x0.Clone();
                ScalarKernels.RopeApply(expected, pos, cos, sin, rows, rowStride, vecs, vecStride, offset, dim, inverse);
                var x = new Guarded(x0.Length, x0);
                Rope.Apply(x.Span, pos, cos, sin, rows, rowStride, vecs, vecStride, offset, dim, inverse);
                TestUtil.Close(expected, x.Span, 1e-6f, 1e-6f, $"rope dim={dim} inverse={inverse}");
                x.AssertMarginsIntact();
            }
        }
    });

    [Fact]
    public void RopeBackwardIsTheGradientOfTheForward()
    {
        // y = R(pos) x; for loss = Σ dOut ⊙ y, dL/dx = R(pos)ᵀ dOut = the inverse rotation of dOut.
        const int dim = 10, rows = 2;
        var (cos, sin) = Rope.BuildTables(dim, 8, 10000);
        int[] pos = { 3, 7 };
        var x = TestUtil.Random(rows * dim, 1);
        var dOut = TestUtil.Random(rows * dim, 2);
        var grad = (float[])dOut.Clone();
        Rope.Apply(grad, pos, cos, sin, rows, dim, 1, dim, 0, dim, inverse: true);
        double Loss(double[] xd)
        {
            double loss = 0;
            for (int r = 0; r < rows; r++)
            {
                for (int i = 0; i < dim / 2; i++)
                {
                    double c = cos[pos[r] * dim / 2 + i], s = sin[pos[r] * dim / 2 + i];
                    double a = xd[r * dim + 2 * i], b = xd[r * dim + 2 * i + 1];
                    loss += dOut[r * dim + 2 * i] * (a * c - b * s) + dOut[r * dim + 2 * i + 1] * (a * s + b * c);
                }
            }

            return loss;
        }

        TestUtil.Close(TestUtil.NumericGradient(TestUtil.ToDouble(x), Loss), grad, 1e-5, 1e-6, "rope backward vs FD");
    }

    [Fact]
    public void BadShapesThrowNamingThem()
    {
        var big = new float[64];
        var e = Assert.Throws<ArgumentException>(() => SwiGlu.Forward(big, big.AsSpan(0, 9), big, 10));
        Assert.Contains("[10]", e.Message);
        e = Assert.Throws<ArgumentException>(() => SwiGlu.Backward(big, big.AsSpan(0, 3), big, big, big, 4));
        Assert.Contains("[4]", e.Message);
        var (cos, sin) = Rope.BuildTables(8, 4, 10000);
        e = Assert.Throws<ArgumentException>(() => Rope.Apply(big.AsSpan(0, 15), new[] { 0, 1 }, cos, sin, 2, 8, 1, 8, 0, 8));
        Assert.Contains("[2, 8]", e.Message);
        e = Assert.Throws<ArgumentException>(() => Rope.Apply(big, new[] { 0, 4 }, cos, sin, 2, 8, 1, 8, 0, 8));
        Assert.Contains("[0, 4)", e.Message);
        e = Assert.Throws<ArgumentException>(() => Rope.Apply(big, new[] { 0, 1 }, cos, sin, 2, 8, 2, 8, 0, 8));
        Assert.Contains("do not fit a row of 8", e.Message);
    }
}
