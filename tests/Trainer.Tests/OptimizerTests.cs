using K2RL.Common;
using K2RL.Model;
using K2RL.Trainer.Optim;

namespace K2RL.Trainer.Tests;

public class OptimizerTests
{
    [Fact]
    public void Optimizer_StateRoundTripsAndTheNextStepsMatch()
    {
        var layout = new ParameterLayout(TestUtil.TestConfig());
        var settings = new OptimizerSettings();
        var w = TestUtil.Gaussian((int)layout.TotalLength, 1, 0.05f);
        var a = new Optimizer(layout, settings);
        for (int s = 0; s < 3; s++)
        {
            a.Apply(w, TestUtil.Gaussian(w.Length, 100 + s, 0.01f), 0.01f);
        }

        var stream = new MemoryStream();
        a.Save(stream);
        var b = new Optimizer(layout, settings);
        stream.Position = 0;
        b.Load(stream, "mem");
        Assert.Equal(a.Step, b.Step);
        Assert.Equal(a.M, b.M);
        Assert.Equal(a.V, b.V);

        var wa = (float[])w.Clone();
        var wb = (float[])w.Clone();
        var g = TestUtil.Gaussian(w.Length, 999, 0.01f);
        a.Apply(wa, g, 0.01f);
        b.Apply(wb, g, 0.01f);
        Assert.Equal(wa, wb);
    }

    [Fact]
    public void Optimizer_RefusesStateOfAnotherShape()
    {
        var small = new Optimizer(new ParameterLayout(TestUtil.TestConfig()), new OptimizerSettings());
        var stream = new MemoryStream();
        small.Save(stream);
        stream.Position = 0;
        var other = new Optimizer(new ParameterLayout(TestUtil.TestConfig() with { VocabSize = 80 }), new OptimizerSettings());
        var e = Assert.Throws<CorruptFileException>(() => other.Load(stream, "opt.bin"));
        Assert.Contains("opt.bin", e.Message);
    }

    [Fact]
    public void Optimizer_LeavesTheCorrectionBiasToTheBalancingRule()
    {
        var layout = new ParameterLayout(TestUtil.TestConfig());
        var w = TestUtil.Gaussian((int)layout.TotalLength, 2, 0.05f);
        var before = (float[])w.Clone();
        new Optimizer(layout, new OptimizerSettings()).Apply(w, TestUtil.Gaussian(w.Length, 3), 0.01f);
        foreach (var t in layout.Tensors)
        {
            if (t.IsRoutingBias)
            {
                Assert.Equal(t.Of(before).ToArray(), t.Of(w).ToArray());
            }
            else
            {
                Assert.NotEqual(t.Of(before).ToArray(), t.Of(w).ToArray());
            }
        }
    }

    [Fact]
    public void Optimizer_IsBitIdenticalWhateverTheThreadCount_AndEqualsMuonUpdatePerMatrix()
    {
        // k2-nano-shaped matrices would make this slow; the test config's layout has every kind of tensor.
        var layout = new ParameterLayout(TestUtil.TestConfig());
        var settings = new OptimizerSettings();
        var w0 = TestUtil.Gaussian((int)layout.TotalLength, 4, 0.05f);
        var grads = Enumerable.Range(0, 2).Select(s => TestUtil.Gaussian(w0.Length, 40 + s, 0.01f)).ToArray();
        float[] Run(int threads)
        {
            var w = (float[])w0.Clone();
            var o = new Optimizer(layout, settings, threads);
            foreach (var g in grads)
            {
                o.Apply(w, g, 0.02f);
            }

            return w;
        }

        var one = Run(1);
        Assert.Equal(one, Run(2));
        Assert.Equal(one, Run(5));

        // The reference: Muon tensor by tensor through OptimMath.MuonUpdate (NS on the caller's GEMM threads).
        var reference = (float[])w0.Clone();
        var m = new float[w0.Length];
        var adam = new Optimizer(layout, settings with { Kind = "adamw" }, 1);
        var muonCheck = new Optimizer(layout, settings, 1);
        foreach (var g in grads)
        {
            var before = (float[])reference.Clone();
            adam.Apply(reference, g, 0.02f); // moves every tensor by AdamW; Muon tensors are redone below
            for (int i = 0; i < layout.Tensors.Count; i++)
            {
                var t = layout.Tensors[i];
                if (muonCheck.GroupOf(i) == ParamGroup.Muon)
                {
                    t.Of(before).CopyTo(t.Of(reference));
                    var scratchIn = new float[t.Length];
                    var scratchOut = new float[t.Length];
                    OptimMath.MuonUpdate(t.Of(reference), t.Of(g), t.Of(m), scratchIn, scratchOut, t.Rows, t.Cols,
                        0.02f, settings.Momentum, settings.Nesterov, settings.WeightDecay, settings.NsSteps);
                }
            }
        }

        Assert.Equal(one, reference);
    }

    [Fact]
    public void Optimizer_ReportsWhereItsTimeWent()
    {
        var layout = new ParameterLayout(TestUtil.TestConfig());
        var o = new Optimizer(layout, new OptimizerSettings());
        var w = TestUtil.Gaussian((int)layout.TotalLength, 6, 0.05f);
        o.Apply(w, TestUtil.Gaussian(w.Length, 7, 0.01f), 0.02f);
        var t = o.LastTimings;
        Assert.True(t.MuonMs > 0 && t.NewtonSchulzMs > 0 && t.NewtonSchulzMs <= t.MuonMs, t.ToString());
        Assert.True(t.OtherMs > 0, t.ToString());   // the AdamW tensors (norms, embedding, head) were updated too
        var adam = new Optimizer(layout, new OptimizerSettings { Kind = "adamw" });
        adam.Apply(w, TestUtil.Gaussian(w.Length, 7, 0.01f), 0.02f);
        Assert.Equal(0, adam.LastTimings.NewtonSchulzMs);
    }
}
