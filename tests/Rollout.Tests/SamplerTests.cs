using K2RL.Rollout;

namespace K2RL.Rollout.Tests;

public class SamplerTests
{
    private static readonly float[] Logits = [2.0f, 1.0f, 0.5f, 3.0f, -1.0f, 0.0f, 2.5f, 1.5f];

    private static int[] Counts(SamplingParams p, int draws, ulong seed = 7)
    {
        var rng = new SamplerRng(seed);
        var counts = new int[Logits.Length];
        var scratch = new int[Logits.Length];
        var probs = new double[Logits.Length];
        for (int i = 0; i < draws; i++)
        {
            counts[Sampler.Sample(Logits, p, ref rng, scratch, probs)]++;
        }

        return counts;
    }

    private static double[] Softmax(float[] x, double t)
    {
        double m = x.Max() / t;
        var e = x.Select(v => Math.Exp(v / t - m)).ToArray();
        double s = e.Sum();
        return e.Select(v => v / s).ToArray();
    }

    [Fact]
    public void TemperatureSamplingFollowsTheSoftmax()
    {
        const int n = 40000;
        foreach (double t in new[] { 1.0, 0.5, 2.0 })
        {
            var counts = Counts(new SamplingParams { Temperature = (float)t }, n);
            var p = Softmax(Logits, t);
            for (int i = 0; i < p.Length; i++)
            {
                double sd = Math.Sqrt(p[i] * (1 - p[i]) / n);
                Assert.True(Math.Abs(counts[i] / (double)n - p[i]) < 5 * sd + 1e-9, $"T={t} token {i}: {counts[i] / (double)n} vs {p[i]}");
            }
        }
    }

    [Fact]
    public void TopKKeepsTheKLargestRenormalized()
    {
        const int n = 30000;
        var counts = Counts(new SamplingParams { TopK = 3 }, n);
        int[] top = [3, 6, 0];
        Assert.Equal(n, top.Sum(i => counts[i]));
        var p = Softmax([3.0f, 2.5f, 2.0f], 1);
        for (int j = 0; j < 3; j++)
        {
            Assert.True(Math.Abs(counts[top[j]] / (double)n - p[j]) < 0.015, $"{j}: {counts[top[j]] / (double)n} vs {p[j]}");
        }
    }

    [Fact]
    public void TopPKeepsTheSmallestNucleus()
    {
        var p = Softmax(Logits, 1);
        // Sorted: token 3, 6, 0, 7, 1 ... The nucleus for top_p just above p3 + p6 is {3, 6, 0}.
        float topP = (float)(p[3] + p[6] + 0.01);
        var counts = Counts(new SamplingParams { TopP = topP }, 20000);
        Assert.True(counts[3] > 0 && counts[6] > 0 && counts[0] > 0);
        Assert.Equal(20000, counts[3] + counts[6] + counts[0]);
    }

    [Fact]
    public void GreedyTakesTheArgmaxLowestIdOnTiesAndDrawsNothing()
    {
        var rng = new SamplerRng(1);
        ulong before = rng.State;
        float[] tie = [1f, 5f, 5f, 2f];
        Assert.Equal(1, Sampler.Sample(tie, new SamplingParams { Temperature = 0 }, ref rng, new int[4], new double[4]));
        Assert.Equal(before, rng.State);
    }

    [Fact]
    public void LogProbIsTheLogSoftmaxAtTemperatureOne()
    {
        var p = Softmax(Logits, 1);
        for (int i = 0; i < Logits.Length; i++)
        {
            Assert.Equal(Math.Log(p[i]), Sampler.LogProb(Logits, i), 5);
        }
    }

    [Fact]
    public void TheRandomStreamRestoresFromItsState()
    {
        var a = new SamplerRng(123);
        a.NextUInt64();
        var b = SamplerRng.FromState(a.State);
        Assert.Equal(a.NextUInt64(), b.NextUInt64());
        Assert.NotEqual(new SamplerRng(1).NextUInt64(), new SamplerRng(2).NextUInt64());
    }
}
