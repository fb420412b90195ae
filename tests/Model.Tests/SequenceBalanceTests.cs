using K2RL.Model.Layers;

namespace K2RL.Model.Tests;

public class SequenceBalanceTests
{
    private static (float[] Scores, int[] Chosen) Routed(int T, int E, int K, int seed)
    {
        var rng = new Random(seed);
        var scores = Enumerable.Range(0, T * E).Select(_ => 1f / (1f + MathF.Exp(-(float)(rng.NextDouble() * 4 - 2)))).ToArray();
        var chosen = new int[T * K];
        for (int t = 0; t < T; t++)
        {
            var order = Enumerable.Range(0, E).OrderByDescending(e => scores[t * E + e]).ToArray();
            order.AsSpan(0, K).CopyTo(chosen.AsSpan(t * K, K));
        }

        return (scores, chosen);
    }

    [Fact]
    public void ValueAndGradientMatchFiniteDifferences()
    {
        const int T = 6, E = 4, K = 2;
        var (scores, chosen) = Routed(T, E, K, seed: 4);
        var grad = new float[T * E];
        float loss = SequenceBalance.Loss(scores, chosen, T, E, K, 1f, grad);
        Assert.True(loss > 0);
        for (int i = 0; i < T * E; i++)
        {
            var plus = (float[])scores.Clone();
            var minus = (float[])scores.Clone();
            plus[i] += 1e-3f;
            minus[i] -= 1e-3f;
            double fd = (SequenceBalance.Loss(plus, chosen, T, E, K, 1f) - SequenceBalance.Loss(minus, chosen, T, E, K, 1f)) / 2e-3;
            Assert.True(Math.Abs(fd - grad[i]) < 2e-3, $"d/ds[{i}]: analytic {grad[i]}, finite difference {fd}");
        }
    }

    [Fact]
    public void BalancedRoutingGivesAlphaAndImbalanceGivesMore()
    {
        const int T = 8, E = 4, K = 2;
        var uniform = Enumerable.Repeat(0.5f, T * E).ToArray();
        var roundRobin = Enumerable.Range(0, T * K).Select(i => i % E).ToArray();
        Assert.Equal(0.25f, SequenceBalance.Loss(uniform, roundRobin, T, E, K, 0.25f), 6);

        // every token to experts 0 and 1, which also hold most of the score mass
        var skewed = new float[T * E];
        for (int t = 0; t < T; t++)
        {
            skewed[t * E] = skewed[t * E + 1] = 0.9f;
            skewed[t * E + 2] = skewed[t * E + 3] = 0.1f;
        }

        var collapsed = Enumerable.Range(0, T * K).Select(i => i % 2).ToArray();
        Assert.True(SequenceBalance.Loss(skewed, collapsed, T, E, K, 1f) > 1.5f);
    }

    [Fact]
    public void BadShapesAreRejectedNamingThem()
    {
        var e = Assert.Throws<ArgumentException>(() => SequenceBalance.Loss(new float[5], new int[4], 2, 4, 2, 1f));
        Assert.Contains("T=2, E=4, K=2", e.Message);
    }
}
