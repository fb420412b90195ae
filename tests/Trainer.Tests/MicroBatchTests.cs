using K2RL.Model;
using K2RL.Trainer.Optim;
using K2RL.Trainer.Pretraining;

namespace K2RL.Trainer.Tests;

/// <summary>Gradient accumulation on the real K2Model (k2-test shape): K micro-batches of B against one batch of K·B.</summary>
public class MicroBatchTests
{
    private const int K = 3, B = 2, T = 12;

    private static (K2ModelAdapter Model, int[] X, int[] Y) Setup()
    {
        var model = new K2ModelAdapter(new K2Model(TestUtil.TestConfig()));
        model.InitializeWeights(11);
        var rng = new Random(5);
        int v = model.Model.Config.VocabSize;
        var x = Enumerable.Range(0, K * B * T).Select(_ => rng.Next(v)).ToArray();
        var y = Enumerable.Range(0, K * B * T).Select(_ => rng.Next(v)).ToArray();
        return (model, x, y);
    }

    private static float Accumulated(K2ModelAdapter model, int[] x, int[] y, MicroBatches micro)
    {
        model.ZeroGradients();
        return micro.Run(K, new int[B * T], new int[B * T], B, T, (k, xs, ys) =>
        {
            x.AsSpan(k * B * T, B * T).CopyTo(xs);
            y.AsSpan(k * B * T, B * T).CopyTo(ys);
        });
    }

    [Fact]
    public void KMicroBatches_GiveTheGradientLossAndUpdateOfOneBatchOfKB()
    {
        var (model, x, y) = Setup();
        var w0 = (float[])model.Parameters.Clone();
        var micro = new MicroBatches(model);
        float lossK = Accumulated(model, x, y, micro);
        var gradK = (float[])model.Gradients.Clone();
        var maxLogitsK = micro.MaxLogits.ToArray();
        var loadK = micro.ExpertLoad.ToArray();

        // The max logit per head is the max over the micro-batches, the loads are their sum.
        var perMicroMax = Enumerable.Repeat(float.NegativeInfinity, maxLogitsK.Length).ToArray();
        var perMicroLoad = new float[loadK.Length];
        for (int k = 0; k < K; k++)
        {
            model.ZeroGradients();
            model.ForwardBackward(x[(k * B * T)..((k + 1) * B * T)], y[(k * B * T)..((k + 1) * B * T)], B, T);
            for (int i = 0; i < perMicroMax.Length; i++)
            {
                perMicroMax[i] = Math.Max(perMicroMax[i], model.MaxLogits[i]);
            }

            for (int i = 0; i < perMicroLoad.Length; i++)
            {
                perMicroLoad[i] += model.ExpertLoad[i];
            }
        }

        Assert.Equal(perMicroMax, maxLogitsK);
        Assert.Equal(perMicroLoad, loadK);
        Assert.Equal(K * B * T * model.Model.Config.NumExpertsPerTok, loadK.Sum()); // one MoE layer in k2-test

        model.ZeroGradients();
        float lossOne = model.ForwardBackward(x, y, K * B, T);
        var gradOne = (float[])model.Gradients.Clone();
        Assert.Equal(lossOne, lossK, 1e-5f);
        Assert.Equal(model.MaxLogits.ToArray(), maxLogitsK);
        double worst = 0, scale = gradOne.Max(MathF.Abs);
        for (int i = 0; i < gradOne.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(gradOne[i] - gradK[i]));
        }

        Assert.True(worst <= 1e-5 * scale, $"accumulated vs one-batch gradient: max |diff| {worst:E2} (max |g| {scale:E2})");

        // The same MuonClip update from either gradient (fresh optimizers, same weights).
        var wK = (float[])w0.Clone();
        var wOne = (float[])w0.Clone();
        new Optimizer(model.Layout, new OptimizerSettings()).Apply(wK, gradK, 0.02f);
        new Optimizer(model.Layout, new OptimizerSettings()).Apply(wOne, gradOne, 0.02f);
        double moved = 0, apart = 0;
        for (int i = 0; i < w0.Length; i++)
        {
            moved = Math.Max(moved, Math.Abs(wOne[i] - w0[i]));
            apart = Math.Max(apart, Math.Abs(wOne[i] - wK[i]));
        }

        Assert.True(apart <= 1e-3 * moved, $"update differs by {apart:E2}, the update itself is {moved:E2}");
    }

    [Fact]
    public void OneMicroBatch_IsExactlyAPlainForwardBackward()
    {
        var (model, x, y) = Setup();
        var micro = new MicroBatches(model);
        model.ZeroGradients();
        float loss = micro.Run(1, new int[B * T], new int[B * T], B, T, (_, xs, ys) =>
        {
            x.AsSpan(0, B * T).CopyTo(xs);
            y.AsSpan(0, B * T).CopyTo(ys);
        });
        var grad = (float[])model.Gradients.Clone();
        model.ZeroGradients();
        Assert.Equal(model.ForwardBackward(x[..(B * T)], y[..(B * T)], B, T), loss);
        Assert.Equal(model.Gradients, grad);
        Assert.Throws<ArgumentException>(() => micro.Run(0, x, y, B, T, (_, _, _) => { }));
    }
}
