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
}
