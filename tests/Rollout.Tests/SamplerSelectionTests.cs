using K2RL.Rollout;

namespace K2RL.Rollout.Tests;

/// <summary>
/// Top-k / top-p sampling orders only the candidates it needs (a selection instead of a sort of the whole
/// vocabulary); the tokens must be exactly those of the full sort it replaced, kept here as the oracle.
/// </summary>
public class SamplerSelectionTests
{
    /// <summary>
    /// The first implementation: every token sorted by (logit descending, id ascending). One definition changed
    /// since: top-p over the whole vocabulary takes top_p of the total mass summed in token order (it was summed
    /// in rank order, which needs the full sort).
    /// </summary>
    private static int FullSortSample(float[] logits, SamplingParams p, ref SamplerRng rng)
    {
        int V = logits.Length;
        double invT = 1.0 / p.Temperature;
        var order = Enumerable.Range(0, V).ToArray();
        Array.Sort(order, (a, b) =>
        {
            int c = logits[b].CompareTo(logits[a]);
            return c != 0 ? c : a.CompareTo(b);
        });
        int n = p.TopK > 0 ? Math.Min(p.TopK, V) : V;
        var probs = new double[n];
        double top = logits[order[0]] * invT, sum = 0;
        for (int r = 0; r < n; r++)
        {
            probs[r] = Math.Exp(logits[order[r]] * invT - top);
            sum += probs[r];
        }

        if (p.TopP < 1f)
        {
            if (n == V)
            {
                sum = 0;
                for (int i = 0; i < V; i++)
                {
                    sum += Math.Exp(logits[i] * invT - top);
                }
            }

            double target = p.TopP * sum, cum = 0;
            int keep = 0;
            while (keep < n)
            {
                cum += probs[keep];
                keep++;
                if (cum >= target)
                {
                    break;
                }
            }

            n = keep;
            sum = cum;
        }

        double u = rng.NextDouble() * sum, acc = 0;
        int last = 0;
        for (int r = 0; r < n; r++)
        {
            if (probs[r] <= 0)
            {
                continue;
            }

            last = r;
            acc += probs[r];
            if (u < acc)
            {
                return order[r];
            }
        }

        return order[last];
    }

    private static float[] RandomLogits(Random rng, int V)
    {
        var x = new float[V];
        for (int i = 0; i < V; i++)
        {
            // coarse values so that ties (and ±0) are common; a few large ones
            x[i] = rng.Next(8) switch
            {
                0 => 0f,
                1 => -0f,
                2 => MathF.Round((float)rng.NextDouble() * 4, 1),
                _ => (float)(rng.NextDouble() * 10 - 5),
            };
        }

        return x;
    }

    [Theory]
    [InlineData(7)]
    [InlineData(64)]
    [InlineData(512)]
    [InlineData(5000)]   // top-p alone orders 64, then 192 more, ...: several rounds
    public void SelectionGivesTheFullSortsTokens(int V)
    {
        var data = new Random(11);
        var scratch = new int[V];
        var probs = new double[V];
        int draws = 0;
        foreach (int topK in new[] { 0, 1, 2, 5, 40, V - 1, V, V + 3 })
        {
            foreach (float topP in new[] { 1f, 0.999f, 0.95f, 0.5f, 0.05f })
            {
                foreach (float t in new[] { 1f, 0.7f, 1.5f })
                {
                    if ((topK == 0 || topK >= V) && topP == 1f)
                    {
                        continue; // unfiltered: the token-order path, not the one under test
                    }

                    var p = new SamplingParams { Temperature = t, TopK = topK, TopP = topP };
                    for (int trial = 0; trial < 20; trial++)
                    {
                        var logits = RandomLogits(data, V);
                        ulong seed = (ulong)data.NextInt64();
                        var want = new SamplerRng(seed);
                        var got = new SamplerRng(seed);
                        int expected = FullSortSample(logits, p, ref want);
                        int actual = Sampler.Sample(logits, p, ref got, scratch, probs);
                        Assert.True(expected == actual, $"V {V} top-k {topK} top-p {topP} T {t} trial {trial}: {actual}, full sort {expected}");
                        Assert.Equal(want.State, got.State);
                        draws++;
                    }
                }
            }
        }

        Assert.True(draws > 300);
    }

    [Fact]
    public void RankKeyOrdersLikeCompareToThenId()
    {
        float[] values = [float.NaN, float.NegativeInfinity, -3.5f, -1e-30f, -0f, 0f, 1e-30f, 2f, float.PositiveInfinity, float.NaN, 2f];
        for (int a = 0; a < values.Length; a++)
        {
            for (int b = 0; b < values.Length; b++)
            {
                int c = values[b].CompareTo(values[a]);
                int want = c != 0 ? c : a.CompareTo(b);
                int got = Sampler.RankKey(values[a], a).CompareTo(Sampler.RankKey(values[b], b));
                Assert.True(Math.Sign(want) == Math.Sign(got), $"{values[a]}#{a} vs {values[b]}#{b}: want {want}, got {got}");
            }
        }
    }

    [Fact]
    public void SelectSmallestKeepsExactlyTheSmallest()
    {
        var rng = new Random(5);
        foreach (int len in new[] { 1, 2, 3, 10, 257 })
        {
            for (int n = 1; n <= len; n += Math.Max(1, len / 7))
            {
                var keys = Enumerable.Range(0, len).Select(i => ((ulong)rng.Next(1000) << 32) | (uint)i).ToArray();
                var sorted = keys.OrderBy(k => k).ToArray();
                Sampler.SelectSmallest(keys, n);
                Assert.Equal(sorted[..n], keys[..n].OrderBy(k => k).ToArray());
            }
        }
    }
}
