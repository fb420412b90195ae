using K2RL.Model.Tests.Reference;
using Xunit.Abstractions;

namespace K2RL.Model.Tests;

/// <summary>
/// Central finite differences on k2-test for every kind of parameter: in float64 through the reference (tight),
/// and directly through the fp32 model (loose, at the largest-gradient coordinates). Routing is checked to stay
/// the same under every perturbation, so the loss is smooth where it is differentiated.
/// </summary>
public class K2ModelGradientCheckTests(ITestOutputHelper output)
{
    private const int B = 2, T = 5;

    /// <summary>One tensor of each kind: every tensor of the dense layer 0 and MoE layer 1, one routed expert.</summary>
    private static IEnumerable<TensorSlot> Kinds(K2Model model, int expert) => model.Layout.Tensors.Where(t =>
        !t.IsRoutingBias && (t.ExpertIndex < 0 || t.ExpertIndex == expert));

    [Fact]
    public void ReferenceGradientsMatchFloat64CentralDifferences()
    {
        var config = ModelTestUtil.Preset("k2-test");
        var model = new K2Model(config);
        ModelTestUtil.FillTestWeights(model, seed: 21);
        var (tokens, targets) = ModelTestUtil.RandomBatch(config.VocabSize, B * T, seed: 4);
        var reference = new ReferenceModel(config, model.Layout, model.Parameters);
        reference.Run(tokens, targets, B, T);
        var chosen = Snapshot(reference.Chosen);
        int expert = MostUsedExpert(reference, layer: 1, config.NRoutedExperts);
        var rng = new Random(1);
        const double eps = 1e-5;
        double worst = 0;
        int checkedCount = 0;
        foreach (var t in Kinds(model, expert))
        {
            var grad = (double[])reference.Grad[t.Name].Clone();
            foreach (int i in Coordinates(grad, rng, t.Name == "model.embed_tokens.weight" ? tokens[0] * config.HiddenSize : -1))
            {
                double orig = reference.Get(t.Name, i);
                reference.Set(t.Name, i, orig + eps);
                reference.Run(tokens, targets, B, T, backward: false);
                double plus = reference.Loss;
                Assert.Equal(chosen, Snapshot(reference.Chosen));
                reference.Set(t.Name, i, orig - eps);
                reference.Run(tokens, targets, B, T, backward: false);
                double minus = reference.Loss;
                Assert.Equal(chosen, Snapshot(reference.Chosen));
                reference.Set(t.Name, i, orig);
                double fd = (plus - minus) / (2 * eps);
                double err = Math.Abs(fd - grad[i]);
                worst = Math.Max(worst, err / (1e-4 + Math.Abs(grad[i])));
                Assert.True(err <= 1e-7 + 1e-5 * Math.Abs(grad[i]), $"{t.Name}[{i}]: analytic {grad[i]:E6} vs central difference {fd:E6}");
                checkedCount++;
            }
        }

        output.WriteLine($"{checkedCount} coordinates over {Kinds(model, expert).Count()} tensors; worst |fd − grad| / (1e-4 + |grad|) = {worst:E2}");
    }

    [Fact]
    public void ModelGradientsMatchCentralDifferencesOfTheFp32Loss()
    {
        var config = ModelTestUtil.Preset("k2-test");
        var model = new K2Model(config);
        ModelTestUtil.FillTestWeights(model, seed: 21);
        var (tokens, targets) = ModelTestUtil.RandomBatch(config.VocabSize, B * T, seed: 4);
        model.ZeroGradients();
        model.ForwardBackward(tokens, targets, B, T);
        var grads = (float[])model.Gradients.Clone();
        var counts = model.ExpertCounts.ToArray();
        int E = config.NRoutedExperts;
        int expert = Enumerable.Range(0, E).OrderByDescending(e => counts[E + e]).First();
        const float eps = 2e-3f;
        double worst = 0;
        foreach (var t in Kinds(model, expert))
        {
            var g = t.Of(grads);
            int best = 0;
            for (int i = 1; i < g.Length; i++)
            {
                best = Math.Abs(g[i]) > Math.Abs(g[best]) ? i : best;
            }

            int at = (int)t.Offset + best;
            float orig = model.Parameters[at];
            model.Parameters[at] = orig + eps;
            double plus = model.Forward(tokens, targets, B, T);
            Assert.Equal(counts, model.ExpertCounts.ToArray());
            model.Parameters[at] = orig - eps;
            double minus = model.Forward(tokens, targets, B, T);
            Assert.Equal(counts, model.ExpertCounts.ToArray());
            model.Parameters[at] = orig;
            double fd = (plus - minus) / (2 * eps);
            double err = Math.Abs(fd - g[best]);
            worst = Math.Max(worst, err / Math.Abs(g[best]));
            output.WriteLine($"{t.Name,-48} grad {g[best],12:E4}  fd {fd,12:E4}");
            Assert.True(err <= 5e-4 + 0.03 * Math.Abs(g[best]), $"{t.Name}[{best}]: analytic {g[best]:E5} vs central difference {fd:E5}");
        }

        output.WriteLine($"worst relative error {worst:E2}");
    }

    [Fact]
    public void SequenceBalanceLossGradientMatchesCentralDifferences()
    {
        // alpha far above the spec's 1e-4 so the balance term is a visible part of every router gradient
        var config = ModelTestUtil.Preset("k2-test");
        var model = new K2Model(config) { SequenceBalanceAlpha = 0.5f };
        ModelTestUtil.FillTestWeights(model, seed: 21);
        var (tokens, targets) = ModelTestUtil.RandomBatch(config.VocabSize, B * T, seed: 4);
        model.ZeroGradients();
        model.ForwardBackward(tokens, targets, B, T);
        Assert.True(model.BalanceLoss > 0);
        var grads = (float[])model.Gradients.Clone();
        var counts = model.ExpertCounts.ToArray();

        // the balance term changes the router's gradient (and, through it, the layers below)
        var plain = new K2Model(config);
        model.Parameters.CopyTo(plain.Parameters, 0);
        plain.ZeroGradients();
        plain.ForwardBackward(tokens, targets, B, T);
        Assert.Equal(0f, plain.BalanceLoss);
        var router = model.Layout.Tensors.First(t => t.Name.EndsWith("mlp.gate.weight", StringComparison.Ordinal));
        Assert.False(router.Of(grads).SequenceEqual(router.Of(plain.Gradients)));

        const float eps = 2e-3f;
        var checkedTensors = model.Layout.Tensors.Where(t => t.Name.EndsWith("mlp.gate.weight", StringComparison.Ordinal)
            || t.Name.EndsWith("post_attention_layernorm.weight", StringComparison.Ordinal) || t.Name.Contains("kv_a_proj", StringComparison.Ordinal));
        foreach (var t in checkedTensors)
        {
            var g = t.Of(grads);
            var rng = new Random(3);
            foreach (int i in new[] { ArgMaxAbs(g), rng.Next(g.Length), rng.Next(g.Length) })
            {
                int at = (int)t.Offset + i;
                float orig = model.Parameters[at];
                model.Parameters[at] = orig + eps;
                double plus = model.Forward(tokens, targets, B, T) + (double)model.BalanceLoss;
                Assert.Equal(counts, model.ExpertCounts.ToArray());
                model.Parameters[at] = orig - eps;
                double minus = model.Forward(tokens, targets, B, T) + (double)model.BalanceLoss;
                Assert.Equal(counts, model.ExpertCounts.ToArray());
                model.Parameters[at] = orig;
                double fd = (plus - minus) / (2 * eps);
                output.WriteLine($"{t.Name,-48}[{i}] grad {g[i],12:E4}  fd {fd,12:E4}");
                Assert.True(Math.Abs(fd - g[i]) <= 5e-4 + 0.03 * Math.Abs(g[i]), $"{t.Name}[{i}]: analytic {g[i]:E5} vs central difference {fd:E5}");
            }
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => model.SequenceBalanceAlpha = float.NaN);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.SequenceBalanceAlpha = -1e-4f);
    }

    private static int ArgMaxAbs(ReadOnlySpan<float> g)
    {
        int best = 0;
        for (int i = 1; i < g.Length; i++)
        {
            best = Math.Abs(g[i]) > Math.Abs(g[best]) ? i : best;
        }

        return best;
    }

    private static int MostUsedExpert(ReferenceModel r, int layer, int E) =>
        Enumerable.Range(0, E).OrderByDescending(e => r.ExpertCounts[layer, e]).First();

    /// <summary>The largest-gradient coordinate and two random ones (or ones from a given start, for embedding rows).</summary>
    private static IEnumerable<int> Coordinates(double[] grad, Random rng, int start)
    {
        int best = 0;
        for (int i = 1; i < grad.Length; i++)
        {
            best = Math.Abs(grad[i]) > Math.Abs(grad[best]) ? i : best;
        }

        yield return best;
        yield return start >= 0 ? start : rng.Next(grad.Length);
        yield return start >= 0 ? start + 1 : rng.Next(grad.Length);
    }

    private static string Snapshot(int[][][] chosen) =>
        string.Join("|", chosen.Select(l => l is null ? "" : string.Join(";", l.Select(n => n is null ? "" : string.Join(",", n)))));
}
