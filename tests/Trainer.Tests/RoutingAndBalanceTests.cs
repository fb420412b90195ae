using K2RL.Common;
using K2RL.Model;
using K2RL.Trainer.Optim;

namespace K2RL.Trainer.Tests;

public class RoutingAndBalanceTests
{
    [Fact]
    public void RoutingTable_CoversEveryTensorOfThePresetsExactlyOnce()
    {
        foreach (var config in new[] { TestUtil.TestConfig(), TestUtil.NanoConfig(), TestUtil.TestConfig() with { QLoraRank = null } })
        {
            var layout = new ParameterLayout(config);
            var groups = ParameterRouting.Resolve(layout);
            for (int i = 0; i < groups.Length; i++)
            {
                var t = layout.Tensors[i];
                var expected = t.IsRoutingBias ? ParamGroup.BalanceRule
                    : t.Name is "model.embed_tokens.weight" or "lm_head.weight" || !t.IsMatrix ? ParamGroup.AdamW
                    : ParamGroup.Muon;
                Assert.True(expected == groups[i], $"{t.Name}: {groups[i]}, expected {expected}");
            }

            var adam = ParameterRouting.Resolve(layout, muon: false);
            Assert.DoesNotContain(ParamGroup.Muon, adam);
        }
    }

    [Fact]
    public void RoutingTable_RejectsUnknownAndDoublyMatchedNames()
    {
        var layout = new ParameterLayout(TestUtil.TestConfig());
        var missing = ParameterRouting.Table.Where(r => !r.Pattern.Contains("router") && r.Why != "router gate").ToList();
        var e = Assert.Throws<ConfigException>(() => ParameterRouting.Resolve(layout, table: missing));
        Assert.Contains("mlp.gate.weight", e.Message);
        Assert.Contains("matches no rule", e.Message);

        var doubled = ParameterRouting.Table.Append(new RoutingRule(@"lm_head\.weight", ParamGroup.Muon, "dup")).ToList();
        e = Assert.Throws<ConfigException>(() => ParameterRouting.Resolve(layout, table: doubled));
        Assert.Contains("lm_head.weight", e.Message);
        Assert.Contains("2 rules", e.Message);

        var muonNorm = ParameterRouting.Table.Select(r => r.Why == "final norm" ? r with { Group = ParamGroup.Muon } : r).ToList();
        e = Assert.Throws<ConfigException>(() => ParameterRouting.Resolve(layout, table: muonNorm));
        Assert.Contains("not a matrix", e.Message);
    }

    [Fact]
    public void BiasRule_MovesExpertLoadTowardTheMean()
    {
        const int tokens = 512, E = 8, K = 2;
        var rng = new Random(11);
        // Skewed sigmoid scores: expert e is favoured by a fixed offset, so without the bias the load is far from even.
        var scores = new float[tokens * E];
        for (int t = 0; t < tokens; t++)
        {
            for (int e = 0; e < E; e++)
            {
                scores[t * E + e] = 1f / (1f + MathF.Exp(-(0.3f * e - 1f + (float)rng.NextDouble())));
            }
        }

        var bias = new float[E];
        double first = 0, last = 0;
        for (int step = 0; step < 400; step++)
        {
            var load = Route(scores, bias, tokens, E, K);
            double ratio = ExpertBalance.MaxOverMean(load);
            if (step == 0)
            {
                first = ratio;
            }

            last = ratio;
            ExpertBalance.UpdateBias(bias, load, ExpertBalance.DefaultGamma * 10);
        }

        Assert.True(first > 2.0, $"the unbalanced start should be skewed, max/mean {first:F2}");
        Assert.True(last < 1.3, $"max/mean load went {first:F2} → {last:F2}");
        Assert.True(bias[E - 1] < bias[0], "the favoured expert's bias goes down");
    }

    [Fact]
    public void BiasRule_IsASignRuleOfStepGamma()
    {
        var bias = new float[] { 0f, 0f, 0f, 0f };
        ExpertBalance.UpdateBias(bias, [10f, 2f, 6f, 6f], 0.001f);
        Assert.Equal(new[] { -0.001f, 0.001f, 0f, 0f }, bias);
    }

    private static float[] Route(float[] scores, float[] bias, int tokens, int E, int K)
    {
        var load = new float[E];
        for (int t = 0; t < tokens; t++)
        {
            foreach (int e in Enumerable.Range(0, E).OrderByDescending(e => scores[t * E + e] + bias[e]).Take(K))
            {
                load[e]++;
            }
        }

        return load;
    }
}
