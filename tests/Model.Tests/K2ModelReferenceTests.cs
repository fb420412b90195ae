using K2RL.Model.Tests.Reference;
using Xunit.Abstractions;

namespace K2RL.Model.Tests;

/// <summary>The fast fp32 model against the separately written double-precision reference, tensor by tensor.</summary>
public class K2ModelReferenceTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("k2-test", 2, 8, 1e-4)]
    [InlineData("k2-nano", 1, 80, 2e-4)] // two causal query blocks, the last one partial
    public void LogitsLossAndEveryGradientMatchTheReference(string preset, int B, int T, double tol)
    {
        var config = ModelTestUtil.Preset(preset);
        var model = new K2Model(config);
        ModelTestUtil.FillTestWeights(model, seed: 11);
        var (tokens, targets) = ModelTestUtil.RandomBatch(config.VocabSize, B * T, seed: 5);
        var reference = new ReferenceModel(config, model.Layout, model.Parameters);
        reference.Run(tokens, targets, B, T);
        output.WriteLine($"{preset}: reference min routing margin {reference.MinRoutingMargin:E2}");
        Assert.True(reference.MinRoutingMargin > 1e-4, "test weights must route unambiguously");

        model.ZeroGradients();
        float loss = model.ForwardBackward(tokens, targets, B, T);
        CompareAll(model, reference, loss, B, T, tol);
    }

    [Fact]
    public void WeightedObjectiveMatchesTheReference()
    {
        var config = ModelTestUtil.Preset("k2-test");
        var model = new K2Model(config);
        ModelTestUtil.FillTestWeights(model, seed: 3);
        int B = 2, T = 6;
        var (tokens, targets) = ModelTestUtil.RandomBatch(config.VocabSize, B * T, seed: 9);
        var weights = Enumerable.Range(0, B * T).Select(i => (float)Math.Sin(i + 1)).ToArray();
        var reference = new ReferenceModel(config, model.Layout, model.Parameters);
        reference.Run(tokens, targets, B, T, weights.Select(v => (double)v).ToArray());
        model.ZeroGradients();
        float loss = model.ForwardBackwardWeighted(tokens, targets, weights, B, T);
        CompareAll(model, reference, loss, B, T, 1e-4);
        for (int n = 0; n < B * T; n++)
        {
            Assert.Equal(reference.TokenLoss[n], model.TokenLosses[n], 1e-4);
        }
    }

    private void CompareAll(K2Model model, ReferenceModel reference, float loss, int B, int T, double tol)
    {
        var config = model.Config;
        int V = config.VocabSize, N = B * T;
        double maxLogitDiff = 0, maxLogitScale = 0;
        for (int n = 0; n < N; n++)
        {
            for (int v = 0; v < V; v++)
            {
                maxLogitDiff = Math.Max(maxLogitDiff, Math.Abs(model.Logits[n * V + v] - reference.Logits[n][v]));
                maxLogitScale = Math.Max(maxLogitScale, Math.Abs(reference.Logits[n][v]));
            }
        }

        output.WriteLine($"logits: max |diff| {maxLogitDiff:E2} (max |logit| {maxLogitScale:F3})");
        output.WriteLine($"loss: model {loss:F7} reference {reference.Loss:F7} |diff| {Math.Abs(loss - reference.Loss):E2}");
        Assert.True(maxLogitDiff <= tol * Math.Max(1, maxLogitScale), $"logits differ by {maxLogitDiff}");
        Assert.True(Math.Abs(loss - reference.Loss) <= tol * Math.Max(1, Math.Abs(reference.Loss)));

        for (int l = 0; l < config.NumHiddenLayers; l++)
        {
            for (int h = 0; h < config.NumAttentionHeads; h++)
            {
                Assert.True(Math.Abs(model.MaxLogits[l * config.NumAttentionHeads + h] - reference.MaxLogit[l, h]) <= 1e-3,
                    $"max logit layer {l} head {h}: {model.MaxLogits[l * config.NumAttentionHeads + h]} vs {reference.MaxLogit[l, h]}");
            }

            for (int e = 0; e < config.NRoutedExperts; e++)
            {
                Assert.Equal(config.IsMoeLayer(l) ? reference.ExpertCounts[l, e] : 0, model.ExpertCounts[l * config.NRoutedExperts + e]);
            }
        }

        double worst = 0;
        string worstName = "";
        foreach (var t in model.Layout.Tensors)
        {
            var mine = t.Of(model.Gradients);
            var theirs = reference.Grad[t.Name];
            double diff = 0, scale = 0;
            for (int i = 0; i < mine.Length; i++)
            {
                diff = Math.Max(diff, Math.Abs(mine[i] - theirs[i]));
                scale = Math.Max(scale, Math.Abs(theirs[i]));
            }

            double rel = diff / Math.Max(scale, 1e-6);
            if (t.IsRoutingBias)
            {
                Assert.Equal(0, scale);
                Assert.Equal(0, diff);
                continue;
            }

            if (!t.Name.Contains("experts.", StringComparison.Ordinal) || rel > tol)
            {
                output.WriteLine($"{t.Name,-52} max |diff| {diff:E2}  max |grad| {scale:E2}  rel {rel:E2}");
            }

            if (rel > worst)
            {
                worst = rel;
                worstName = t.Name;
            }

            Assert.True(scale == 0 ? diff == 0 : rel <= tol, $"{t.Name}: max |diff| {diff} vs max |grad| {scale}");
        }

        output.WriteLine($"worst relative gradient difference: {worst:E2} ({worstName})");
    }
}
