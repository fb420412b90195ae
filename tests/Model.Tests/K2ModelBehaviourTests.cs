using K2RL.Common;
using Xunit.Abstractions;

namespace K2RL.Model.Tests;

[CollectionDefinition("allocation", DisableParallelization = true)]
public class AllocationCollection;

public class K2ModelBehaviourTests
{
    [Fact]
    public void TokenIdsOutsideTheVocabularyAreRejectedWithIdAndPosition()
    {
        var config = ModelTestUtil.Preset("k2-test");
        var model = new K2Model(config);
        model.InitializeWeights(1);
        var tokens = new int[8];
        var targets = new int[8];
        tokens[5] = config.VocabSize;
        var e = Assert.Throws<ArgumentException>(() => model.Forward(tokens, targets, 2, 4));
        Assert.Contains($"token id {config.VocabSize} at position 5", e.Message);
        tokens[5] = -3;
        e = Assert.Throws<ArgumentException>(() => model.ForwardBackward(tokens, targets, 2, 4));
        Assert.Contains("token id -3 at position 5", e.Message);
        tokens[5] = 0;
        targets[2] = config.VocabSize + 7;
        e = Assert.Throws<ArgumentException>(() => model.Forward(tokens, targets, 2, 4));
        Assert.Contains($"target id {config.VocabSize + 7} at position 2", e.Message);
    }

    [Fact]
    public void YarnScalingIsRejectedRatherThanIgnored()
    {
        var config = ModelTestUtil.Preset("k2-test") with
        {
            RopeScaling = new RopeScaling("yarn", 4, 64, 32, 1, 1, 1),
        };
        Assert.Throws<ConfigException>(() => new K2Model(config));
    }

    [Fact]
    public void InitializationIsDeterministicAndRunsAreBitwiseRepeatable()
    {
        var config = ModelTestUtil.Preset("k2-test");
        var a = new K2Model(config);
        var b = new K2Model(config);
        a.InitializeWeights(42);
        b.InitializeWeights(42);
        Assert.Equal(a.Parameters, b.Parameters);
        foreach (var t in a.Layout.Tensors)
        {
            var s = t.Of(a.Parameters);
            if (t.IsRoutingBias)
            {
                Assert.All(s.ToArray(), v => Assert.Equal(0f, v));
            }
            else if (!t.IsMatrix)
            {
                Assert.All(s.ToArray(), v => Assert.Equal(1f, v));
            }
        }

        var (tokens, targets) = ModelTestUtil.RandomBatch(config.VocabSize, 3 * 7, seed: 2);
        float la = a.ForwardBackward(tokens, targets, 3, 7);
        float lb = b.ForwardBackward(tokens, targets, 3, 7);
        Assert.Equal(la, lb);
        Assert.Equal(a.Gradients, b.Gradients);
        Assert.True(Math.Abs(la - Math.Log(config.VocabSize)) < 0.1, $"initial loss {la} should be near ln V");
        b.ZeroGradients();
        Assert.All(b.Gradients, v => Assert.Equal(0f, v));
    }

    [Fact]
    public void GradientsAccumulateAcrossCalls()
    {
        var config = ModelTestUtil.Preset("k2-test");
        var model = new K2Model(config);
        ModelTestUtil.FillTestWeights(model, 8);
        var (tokens, targets) = ModelTestUtil.RandomBatch(config.VocabSize, 8, seed: 3);
        model.ForwardBackward(tokens, targets, 2, 4);
        var once = (float[])model.Gradients.Clone();
        model.ForwardBackward(tokens, targets, 2, 4);
        for (int i = 0; i < once.Length; i++)
        {
            Assert.Equal(2 * once[i], model.Gradients[i], 1e-6f * Math.Max(1f, Math.Abs(once[i])));
        }
    }
}

[Collection("allocation")]
public class K2ModelAllocationTests(ITestOutputHelper output)
{
    /// <summary>
    /// Bytes allocated per training step after warmup, for one (B, T). The scalar kernels build argument-check
    /// strings on every call (a constant per call, independent of sizes), so the test compares two sequence
    /// lengths with the same number of kernel calls: any per-step buffer of ours would grow with T (the smallest
    /// activation, [T, D] floats, is 1.5 KB at T = 12 and 6 KB at T = 48).
    /// </summary>
    private long BytesPerStep(int B, int T)
    {
        var config = ModelTestUtil.Preset("k2-test");
        var model = new K2Model(config);
        model.InitializeWeights(3);
        var (tokens, targets) = ModelTestUtil.RandomBatch(config.VocabSize, B * T, seed: 1);
        var weights = new float[B * T];
        Array.Fill(weights, 0.01f);
        for (int i = 0; i < 3; i++)
        {
            model.ForwardBackward(tokens, targets, B, T);
            model.ForwardBackwardWeighted(tokens, targets, weights, B, T);
        }

        // the minimum over rounds discards the runtime's own one-off allocations (tiered JIT, thread statics)
        const int steps = 4;
        long perStep = long.MaxValue;
        for (int round = 0; round < 4; round++)
        {
            long before = GC.GetTotalAllocatedBytes(precise: true);
            for (int i = 0; i < steps; i++)
            {
                model.ZeroGradients();
                model.ForwardBackward(tokens, targets, B, T);
                model.ForwardBackwardWeighted(tokens, targets, weights, B, T);
            }

            perStep = Math.Min(perStep, (GC.GetTotalAllocatedBytes(precise: true) - before) / steps);
        }

        output.WriteLine($"B={B} T={T}: {perStep} bytes allocated per step after warmup");
        return perStep;
    }

    [Fact]
    public void ATrainingStepAllocatesNoBuffersAfterWarmup()
    {
        BytesPerStep(1, 12); // warms the JIT for both shapes' code paths
        long small = BytesPerStep(1, 12);
        long large = BytesPerStep(1, 48);
        Assert.True(Math.Abs(large - small) < 1536, $"per-step allocation grows with T: {small} -> {large} bytes");
        Assert.True(large < 64 * 1024, $"a step allocated {large} bytes");
    }
}
