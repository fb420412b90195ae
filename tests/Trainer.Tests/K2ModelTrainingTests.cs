using K2RL.Model;
using K2RL.Model.Tokenization;
using K2RL.Trainer.Optim;
using K2RL.Trainer.Pretraining;

namespace K2RL.Trainer.Tests;

/// <summary>MuonClip and the pretraining loop on the real K2Model (tiny k2-test shape).</summary>
public class K2ModelTrainingTests
{
    private static (K2Model Model, int[] X, int[] Y, int B, int T) Setup(int seed)
    {
        var model = new K2Model(TestUtil.TestConfig());
        model.InitializeWeights((ulong)seed);
        const int B = 2, T = 16;
        var rng = new Random(seed);
        var x = Enumerable.Range(0, B * T).Select(_ => rng.Next(model.Config.VocabSize)).ToArray();
        var y = Enumerable.Range(0, B * T).Select(_ => rng.Next(model.Config.VocabSize)).ToArray();
        // Large q/k weights so the logits are far from zero and the clip has something to do.
        foreach (var t in model.Layout.Tensors.Where(t => t.Name.Contains("q_b_proj") || t.Name.Contains("kv_b_proj")))
        {
            foreach (ref float w in t.Of(model.Parameters))
            {
                w *= 4f;
            }
        }

        return (model, x, y, B, T);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void QkClip_FreshForwardPutsClippedHeadsAtTauAndLeavesOtherHeadsBitIdentical(int layer)
    {
        var (model, x, y, B, T) = Setup(3);
        var cfg = model.Config;
        int L = cfg.NumHiddenLayers, H = cfg.NumAttentionHeads;
        model.Forward(x, y, B, T);
        var before = model.MaxLogits.ToArray();
        // Clip head 0 of the chosen layer: tau is 60% of its max logit; every other head is presented below tau.
        float tau = 0.6f * before[layer * H];
        var presented = new float[L * H];
        presented[layer * H] = before[layer * H];
        var clipped = QkClip.Apply(model.Parameters, model.Layout, presented, tau);
        Assert.Single(clipped);

        model.Forward(x, y, B, T);
        var after = model.MaxLogits.ToArray();
        Assert.True(after[layer * H] <= tau * (1 + 1e-5f), $"clipped head: {before[layer * H]} → {after[layer * H]}, tau {tau}");
        Assert.Equal(tau, after[layer * H], tau * 1e-5f);
        // Heads of the same and earlier layers see the same inputs: bit-identical. (Later layers see a changed
        // residual stream through the clipped head's output, so their logits legitimately move.)
        for (int l = 0; l <= layer; l++)
        {
            for (int h = 0; h < H; h++)
            {
                if (l == layer && h == 0)
                {
                    continue;
                }

                Assert.True(BitConverter.SingleToInt32Bits(before[l * H + h]) == BitConverter.SingleToInt32Bits(after[l * H + h]),
                    $"layer {l} head {h}: {before[l * H + h]:R} → {after[l * H + h]:R}");
            }
        }
    }

    [Fact]
    public void QkClip_AfterAMuonClipStep_EveryHeadOverTauComesBackUnderIt()
    {
        var (model, x, y, B, T) = Setup(5);
        var opt = new Optimizer(model.Layout, new OptimizerSettings { Kind = "muonclip" });
        model.ZeroGradients();
        model.ForwardBackward(x, y, B, T);
        var recorded = model.MaxLogits.ToArray();
        float tau = recorded.Order().ElementAt(recorded.Length / 2); // about half the heads over tau
        opt.Apply(model.Parameters, model.Gradients, 1e-6f);         // a tiny step: the logits barely move
        var clipped = QkClip.Apply(model.Parameters, model.Layout, recorded, tau);
        Assert.NotEmpty(clipped);
        var momentum = (float[])opt.M.Clone();
        model.Forward(x, y, B, T);
        var fresh = model.MaxLogits.ToArray();
        // Only the first layer's heads are compared exactly: their inputs are unchanged by clipping.
        int H = model.Config.NumAttentionHeads;
        foreach (var c in clipped.Where(c => c.Layer == 0))
        {
            Assert.True(fresh[c.Head] <= tau * 1.001f, $"head {c.Head}: {c.MaxLogit} → {fresh[c.Head]} (tau {tau})");
        }

        Assert.Equal(momentum, opt.M); // momentum is not rescaled
        Assert.All(clipped, c => Assert.True(c.MaxLogit > tau && c.Layer < model.Config.NumHiddenLayers && c.Head < H));
    }

    [Fact]
    public void PretrainLoop_OnK2Model_ResumesBitExactly()
    {
        using var dir = new TestUtil.TempDir();
        var job = PretrainLoopTests.Job(dir, steps: 6, every: 2);
        var encoder = new BpeTextEncoder(BpeTokenizer.ByteLevel());
        PretrainResult Run(string name, bool resume, long? max) =>
            new Pretrainer(job, Path.Combine(dir.Path, name), TrainableModels.Create(job.Model), PretrainLoopTests.Corpus, encoder)
                .Train(resume, max, CancellationToken.None);
        Run("a", false, null);
        Run("b", false, 3);
        Run("b", true, null);
        var a = StepMetrics.ReadAll(Path.Combine(dir.Path, "a", "metrics.jsonl"));
        var b = StepMetrics.ReadAll(Path.Combine(dir.Path, "b", "metrics.jsonl"));
        Assert.Equal(6, a.Count);
        Assert.Equal(a.Select(m => m.Loss), b.Select(m => m.Loss));
        Assert.Equal(a.Select(m => m.MaxLogit), b.Select(m => m.MaxLogit));
        Assert.True(a[^1].Loss < a[0].Loss, $"loss {a[0].Loss} → {a[^1].Loss}");
    }
    [Fact]
    public void SequenceBalanceLoss_IsReportedPerStepAndItsGradientBalancesTheRouter()
    {
        // In the job: the metric is written and the run still resumes exactly.
        using var dir = new TestUtil.TempDir();
        var job = PretrainLoopTests.Job(dir, "balance:\n  seq_aux_alpha: 0.01\n", steps: 4, every: 2);
        Assert.Equal(0.01f, job.SeqAuxAlpha);
        var encoder = new BpeTextEncoder(BpeTokenizer.ByteLevel());
        new Pretrainer(job, Path.Combine(dir.Path, "a"), TrainableModels.Create(job.Model), PretrainLoopTests.Corpus, encoder)
            .Train(false, null, CancellationToken.None);
        var metrics = StepMetrics.ReadAll(Path.Combine(dir.Path, "a", "metrics.jsonl"));
        Assert.All(metrics, m => Assert.True(m.BalanceLoss > 0 && float.IsFinite(m.BalanceLoss), $"balance loss {m.BalanceLoss}"));

        // Overload experts 0 and 1 through the correction bias (selection only; the bias gets no gradient, so
        // the choices stay put), then descend the balance loss alone on the router weights: the loss falls
        // because the overloaded experts' share of the scores falls.
        var (model, x, y, B, T) = Setup(seed: 5);
        model.SequenceBalanceAlpha = 1f;
        var routers = model.Layout.Tensors.Where(t => t.Name.EndsWith("mlp.gate.weight", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(routers);
        foreach (var bias in model.Layout.Tensors.Where(t => t.IsRoutingBias))
        {
            var b = bias.Of(model.Parameters);
            b.Clear();
            b[0] = b[1] = 100f;
        }
        var plain = new K2Model(model.Config);
        var first = new List<float>();
        for (int i = 0; i < 30; i++)
        {
            // the balance gradient is the difference between the model's router gradient and the plain one's
            model.Parameters.CopyTo(plain.Parameters, 0);
            model.ZeroGradients();
            plain.ZeroGradients();
            model.ForwardBackward(x, y, B, T);
            plain.ForwardBackward(x, y, B, T);
            first.Add(model.BalanceLoss);
            foreach (var t in routers)
            {
                var w = t.Of(model.Parameters);
                ReadOnlySpan<float> g = t.Of(model.Gradients), g0 = t.Of(plain.Gradients);
                for (int j = 0; j < w.Length; j++)
                {
                    w[j] -= 0.5f * (g[j] - g0[j]);
                }
            }
        }

        Assert.True(first[^1] < 0.5f * first[0], $"balance loss {first[0]} → {first[^1]}");
    }
}
