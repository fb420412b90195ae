using K2RL.Kernels;

namespace K2RL.Kernels.Tests;

public class GemmTests
{
    public static TheoryData<GemmOp, int> OpsAndWidths()
    {
        var data = new TheoryData<GemmOp, int>();
        foreach (GemmOp op in new[] { GemmOp.NN, GemmOp.NT, GemmOp.TN })
        {
            foreach (int w in new[] { 0, 128, 256, 512, -1 })
            {
                data.Add(op, w);
            }
        }

        return data;
    }

    /// <summary>Stored shapes and leading dimensions of A and B for op (with some padding so views are strided).</summary>
    private static (int ARows, int ACols, int BRows, int BCols) Stored(GemmOp op, int m, int n, int k) => op switch
    {
        GemmOp.NN => (m, k, k, n),
        GemmOp.NT => (m, k, n, k),
        _ => (k, m, k, n),
    };

    private static void CheckAgainstTwin(GemmOp op, int m, int n, int k, int pad, bool accumulate, int seed, int threads)
    {
        var (ar, ac, br, bc) = Stored(op, m, n, k);
        int lda = ac + pad, ldb = bc + pad, ldc = n + pad;
        int aLen = ar == 0 ? 0 : (ar - 1) * lda + ac;
        int bLen = br == 0 ? 0 : (br - 1) * ldb + bc;
        int cLen = m == 0 ? 0 : (m - 1) * ldc + n;
        var a = new Guarded(aLen, TestUtil.Random(aLen, seed));
        var b = new Guarded(bLen, TestUtil.Random(bLen, seed + 1));
        var c0 = TestUtil.Random(cLen, seed + 2);
        var c = new Guarded(cLen, c0);
        var expected = (float[])c0.Clone();
        ScalarKernels.Gemm(op, expected, ldc, a.Span, lda, b.Span, ldb, m, n, k, accumulate);
        Gemm.Multiply(op, c.Span, ldc, a.Span, lda, b.Span, ldb, m, n, k, accumulate, threads);
        TestUtil.Close(expected, c.Span, 1e-5f, 2e-6f * (k + 1), $"{op} m={m} n={n} k={k} pad={pad} acc={accumulate}");
        a.AssertMarginsIntact();
        b.AssertMarginsIntact();
        c.AssertMarginsIntact();
    }

    [Theory]
    [MemberData(nameof(OpsAndWidths))]
    public void SmallAndOddShapesMatchTheScalarTwin(GemmOp op, int width)
    {
        TestUtil.WithWidth(width, () =>
        {
            int seed = 1;
            int[] sizes = { 0, 1, 2, 3, 5, 6, 7, 8, 13, 17, 31, 33 };
            foreach (int m in sizes)
            {
                foreach (int n in sizes)
                {
                    foreach (int k in new[] { 0, 1, 7, 19 })
                    {
                        CheckAgainstTwin(op, m, n, k, pad: (m + n) % 3, accumulate: (m + k) % 2 == 0, seed++, threads: 2);
                    }
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(OpsAndWidths))]
    public void BlockEdgesMatchTheScalarTwin(GemmOp op, int width)
    {
        // Sizes that straddle MR (6), NR (8/16/32), KC (256) and MC (144); big enough to run on two threads.
        var shapes = width == 512 && !System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated
            ? new[] { (145, 37, 261) }
            : new[] { (145, 37, 261), (150, 161, 300), (7, 300, 257), (300, 9, 64), (289, 66, 513) };
        TestUtil.WithWidth(width, () =>
        {
            int seed = 100;
            foreach (var (m, n, k) in shapes)
            {
                CheckAgainstTwin(op, m, n, k, pad: 3, accumulate: false, seed++, threads: 2);
                CheckAgainstTwin(op, m, n, k, pad: 0, accumulate: true, seed++, threads: 1);
            }
        });
    }

    [Theory]
    [InlineData(GemmOp.NN)]
    [InlineData(GemmOp.NT)]
    [InlineData(GemmOp.TN)]
    public void ResultsAreBitIdenticalAcrossRunsAndThreadCounts(GemmOp op)
    {
        foreach (var (m, n, k) in new[] { (301, 203, 517), (64, 700, 300), (2048 / 8, 128, 256) })
        {
            var (ar, ac, br, bc) = Stored(op, m, n, k);
            var a = TestUtil.Random(ar * ac, 7);
            var b = TestUtil.Random(br * bc, 8);
            var one = new float[m * n];
            Gemm.Multiply(op, one, n, a, ac, b, bc, m, n, k, false, maxThreads: 1);
            for (int rep = 0; rep < 5; rep++)
            {
                foreach (int threads in new[] { 2, 3, 1 })
                {
                    var again = TestUtil.Random(m * n, rep); // garbage that must be overwritten
                    Gemm.Multiply(op, again, n, a, ac, b, bc, m, n, k, false, threads);
                    Assert.True(one.AsSpan().SequenceEqual(again), $"{op} {m}x{n}x{k} threads={threads} rep={rep} differs");
                }
            }
        }
    }
    [Fact]
    public void ConcurrentCallersGetTheSameBits()
    {
        const int m = 200, n = 150, k = 300;
        var a = TestUtil.Random(m * k, 1);
        var b = TestUtil.Random(k * n, 2);
        var expected = new float[m * n];
        Gemm.Multiply(GemmOp.NN, expected, a, b, m, n, k);
        Parallel.For(0, 8, _ =>
        {
            var c = new float[m * n];
            for (int i = 0; i < 5; i++)
            {
                Gemm.Multiply(GemmOp.NN, c, a, b, m, n, k);
                Assert.True(expected.AsSpan().SequenceEqual(c));
            }
        });
    }

    [Fact]
    public void MismatchedShapesThrowNamingThem()
    {
        var a = new float[6 * 4];
        var b = new float[4 * 5];
        var c = new float[6 * 5];
        var e = Assert.Throws<ArgumentException>(() => Gemm.Multiply(GemmOp.NN, c.AsSpan(0, 29), a, b, 6, 5, 4));
        Assert.Contains("[6, 5]", e.Message);
        Assert.Contains("NN m=6 n=5 k=4", e.Message);
        e = Assert.Throws<ArgumentException>(() => Gemm.Multiply(GemmOp.NN, c, a.AsSpan(0, 23), b, 6, 5, 4));
        Assert.Contains("[6, 4]", e.Message);
        e = Assert.Throws<ArgumentException>(() => Gemm.Multiply(GemmOp.NT, c, a, b.AsSpan(0, 19), 6, 5, 4));
        Assert.Equal("B", e.ParamName);
        Assert.Contains("[5, 4]", e.Message);
        e = Assert.Throws<ArgumentException>(() => Gemm.Multiply(GemmOp.TN, c, 5, a, 6, b, 4, 6, 5, 4));
        Assert.Contains("leading dimension 4 < cols 5", e.Message);
        e = Assert.Throws<ArgumentException>(() => Gemm.Multiply(GemmOp.NN, c, 5, a, 4, b, 5, 6, 5, 4, false, 0));
        Assert.Contains("maxThreads", e.Message);
        Assert.Throws<ArgumentException>(() => Gemm.Multiply(GemmOp.NN, c, a, b, -1, 5, 4));
        Assert.Throws<ArgumentException>(() => Gemm.Multiply((GemmOp)7, c, a, b, 6, 5, 4));
    }

    [Fact]
    public void EmptyReductionClearsOrKeepsC()
    {
        var c = new Guarded(12, TestUtil.Random(12, 3));
        var keep = c.ToArray();
        Gemm.Multiply(GemmOp.NN, c.Span, 4, ReadOnlySpan<float>.Empty, 0, ReadOnlySpan<float>.Empty, 4, 3, 4, 0, accumulate: true);
        Assert.Equal(keep, c.ToArray());
        Gemm.Multiply(GemmOp.NN, c.Span, 4, ReadOnlySpan<float>.Empty, 0, ReadOnlySpan<float>.Empty, 4, 3, 4, 0);
        Assert.All(c.ToArray(), v => Assert.Equal(0f, v));
        c.AssertMarginsIntact();
    }
}
