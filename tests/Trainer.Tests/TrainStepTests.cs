using K2RL.Model;
using K2RL.Trainer.Optim;
using K2RL.Trainer.Pretraining;
using K2RL.Trainer.Training;

namespace K2RL.Trainer.Tests;

/// <summary>
/// <see cref="TrainStep"/> on the real K2Model (k2-test shape): micro-batches against one batch holding the same
/// rows. An inert step (lr 0, no gradient clip, no QK-Clip, bias rule off) leaves the accumulated gradient readable.
/// </summary>
public class TrainStepTests
{
    private const int T = 12;

    private static readonly OptimizerSettings Inert = new() { Kind = "muon", GradClip = 0f };

    private static (K2ModelAdapter Model, int[] X, int[] Y) Setup(int rows, int seed = 5)
    {
        var model = new K2ModelAdapter(new K2Model(TestUtil.TestConfig()));
        model.InitializeWeights(11);
        var rng = new Random(seed);
        int v = model.Model.Config.VocabSize;
        var x = Enumerable.Range(0, rows * T).Select(_ => rng.Next(v)).ToArray();
        var y = Enumerable.Range(0, rows * T).Select(_ => rng.Next(v)).ToArray();
        return (model, x, y);
    }

    /// <summary>Rows [row0, row0 + b) of x and y as one micro-batch.</summary>
    private static MicroBatch Rows(int[] x, int[] y, int row0, int b) =>
        new(x[(row0 * T)..((row0 + b) * T)], y[(row0 * T)..((row0 + b) * T)], b, T);

    private static void AssertClose(float[] expected, float[] actual, double relative, string what)
    {
        double worst = 0, scale = expected.Max(MathF.Abs);
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        }

        Assert.True(worst <= relative * scale, $"{what}: max |diff| {worst:E2} (max |g| {scale:E2})");
    }

    [Fact]
    public void KMicroBatches_GiveTheGradientLossMaxLogitsAndLoadsOfOneBatch()
    {
        const int K = 3, B = 2;
        var (model, x, y) = Setup(K * B);
        var step = new TrainStep(model, Inert, biasGamma: 0f);
        var w0 = (float[])model.Parameters.Clone();
        var r = step.Run(Enumerable.Range(0, K).Select(k => Rows(x, y, k * B, B)).ToArray(), 0f);
        Assert.Equal(w0, model.Parameters);  // lr 0: nothing moved
        var gradK = (float[])model.Gradients.Clone();

        // The max logit per head is the max over the micro-batches, the loads are their sum.
        var perMicroMax = Enumerable.Repeat(float.NegativeInfinity, step.MaxLogits.Length).ToArray();
        var perMicroLoad = new float[step.ExpertLoad.Length];
        for (int k = 0; k < K; k++)
        {
            var b = Rows(x, y, k * B, B);
            model.Forward(b.Inputs, b.Targets, B, T);
            for (int i = 0; i < perMicroMax.Length; i++)
            {
                perMicroMax[i] = Math.Max(perMicroMax[i], model.MaxLogits[i]);
                Assert.True(perMicroMax[i] <= r.MaxLogit);
            }

            for (int i = 0; i < perMicroLoad.Length; i++)
            {
                perMicroLoad[i] += model.ExpertLoad[i];
            }
        }

        Assert.Equal(perMicroMax, step.MaxLogits.ToArray());
        Assert.Equal(perMicroLoad, step.ExpertLoad.ToArray());
        Assert.Equal(K * B * T * model.Model.Config.NumExpertsPerTok, perMicroLoad.Sum()); // one MoE layer in k2-test
        Assert.Equal(K * B * T, r.Tokens);
        Assert.False(r.Skipped);

        model.ZeroGradients();
        float lossOne = model.Model.ForwardBackward(x, y, K * B, T);
        Assert.Equal(lossOne, r.Loss, 1e-5);
        Assert.Equal(model.MaxLogits.ToArray(), step.MaxLogits.ToArray());
        AssertClose(model.Gradients, gradK, 1e-5, "accumulated vs one-batch gradient");
    }

    [Fact]
    public void UnequalMaskedMicroBatches_ArePerTokenMeanOfOneBatch()
    {
        // Micro-batches of 1, 2 and 3 rows with different numbers of masked targets: a mean of the micro-batch means
        // would weight a token of the 1-row micro-batch many times more than one of the mostly masked 3-row one.
        var (model, x, y) = Setup(6);
        for (int i = 0; i < y.Length; i++)
        {
            int row = i / T;
            bool masked = row switch { 0 => false, 1 or 2 => i % T < 4, _ => i % T != 7 && i % T != 3 };
            y[i] = masked ? -1 : y[i];
        }

        model.SequenceBalanceAlpha = 0.01f;
        var step = new TrainStep(model, Inert, biasGamma: 0f);
        var r = step.Run([Rows(x, y, 0, 1), Rows(x, y, 1, 2), Rows(x, y, 3, 3)], 0f);
        var gradK = (float[])model.Gradients.Clone();
        Assert.Equal(0.01f, model.SequenceBalanceAlpha);  // restored after the step

        model.ZeroGradients();
        float lossOne = model.Model.ForwardBackward(x, y, 6, T);
        Assert.Equal(y.Count(t => t >= 0), r.Tokens);
        Assert.Equal(lossOne, r.Loss, 1e-5 * lossOne);
        Assert.Equal(model.BalanceLoss, r.BalanceLoss, 1e-5f * model.BalanceLoss);
        AssertClose(model.Gradients, gradK, 1e-5, "masked micro-batches vs one batch (balance loss on)");
    }

    [Fact]
    public void WeightedAndScaledMicroBatches_AddTheirGradients()
    {
        const float scale = 0.1f;
        var (model, x, y) = Setup(4);
        y[3] = y[20] = -1;
        var ce = Rows(x, y, 0, 2);
        var ceScaled = new MicroBatch(ce.Inputs, ce.Targets, 2, T) { Scale = scale };
        double seenLogProbs = 0;
        TokenWeighting weighting = (logProbs, targets, w) =>
        {
            double loss = 0;
            for (int i = 0; i < w.Length; i++)
            {
                seenLogProbs += logProbs[i];
                w[i] = targets[i] >= 0 ? (i % 3 - 1) * 0.05f : 0f;   // negative, zero and positive weights
                loss -= w[i] * logProbs[i];
            }

            return loss;
        };
        var rl = Rows(x, y, 2, 2);
        var weighted = new MicroBatch(rl.Inputs, rl.Targets, 2, T) { Weighting = weighting };
        var step = new TrainStep(model, Inert, biasGamma: 0f);
        var r = step.Run([ceScaled, weighted], 0f);
        var grad = (float[])model.Gradients.Clone();

        model.ZeroGradients();
        float ceLoss = model.Model.Forward(ce.Inputs, ce.Targets, 2, T);
        int n = ce.CountTargets();
        var ceWeights = ce.Targets.Select(t => t >= 0 ? scale / n : 0f).ToArray();
        model.BackwardWeighted(ce.Inputs, ce.Targets, ceWeights);
        model.Model.Forward(rl.Inputs, rl.Targets, 2, T);
        Assert.Equal(-model.TokenLosses.ToArray().Sum(), seenLogProbs, 1e-4);
        var w = new float[2 * T];
        double rlLoss = weighting(model.TokenLosses.ToArray().Select(l => -l).ToArray(), rl.Targets, w);
        model.BackwardWeighted(rl.Inputs, rl.Targets, w);
        Assert.Equal(scale * ceLoss + rlLoss, r.Loss, 1e-5);
        AssertClose(model.Gradients, grad, 1e-5, "CE·scale + weighted vs separate backwards");
    }

    [Fact]
    public void OneMicroBatch_IsExactlyAPlainForwardBackward()
    {
        var (model, x, y) = Setup(2);
        var r = new TrainStep(model, Inert, biasGamma: 0f).Run([Rows(x, y, 0, 2)], 0f);
        var grad = (float[])model.Gradients.Clone();
        model.ZeroGradients();
        Assert.Equal(model.Model.ForwardBackward(x, y, 2, T), (float)r.Loss);
        Assert.Equal(model.Gradients, grad);
    }

    [Fact]
    public void BadBatches_AreRefused()
    {
        var (model, x, y) = Setup(2);
        var step = new TrainStep(model, Inert, biasGamma: 0f);
        Assert.Throws<ArgumentException>(() => step.Run([], 0f));
        var e = Assert.Throws<ArgumentException>(() => step.Run([Rows(x, y, 0, 1), new MicroBatch(x[T..], y[T..], 1, T) { Scale = 0.5f }], 0f));
        Assert.Contains("share one Scale", e.Message);
        Assert.Throws<ArgumentException>(() => new MicroBatch(x, y, 3, T));
    }

    [Fact]
    public void NonFiniteLoss_SkipsTheUpdate()
    {
        var model = new BigramModel(TestUtil.TestConfig());
        model.InitializeWeights(3);
        model.PoisonCalls.Add(1);
        var w0 = (float[])model.Parameters.Clone();
        var x = Enumerable.Range(0, 2 * T).Select(i => i % 7).ToArray();
        var step = new TrainStep(model, new OptimizerSettings(), biasGamma: 0.001f);
        var r = step.Run([new MicroBatch(x[..T], x[..T], 1, T), new MicroBatch(x[T..], x[T..], 1, T)], 0.02f);
        Assert.True(r.Skipped);
        Assert.True(double.IsNaN(r.Loss));
        Assert.Equal(w0, model.Parameters);
        Assert.Equal(0, step.Optimizer.Step);
        r = step.Run([new MicroBatch(x, x, 2, T)], 0.02f);
        Assert.False(r.Skipped);
        Assert.NotEqual(w0, model.Parameters);
    }
}
