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

    [Fact]
    public void NewtonSchulzRejectsShortBuffers()
    {
        var e = Assert.Throws<ArgumentException>(() => NewtonSchulz.Orthogonalize(new float[11], new float[12], 3, 4));
        Assert.Contains("[3, 4]", e.Message);
    }

}
