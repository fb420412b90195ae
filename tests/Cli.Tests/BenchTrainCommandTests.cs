using System.Text.Json;
using K2RL.Trainer.Optim;
using K2RL.Tests.Shared;

namespace K2RL.Cli.Tests;

public class BenchTrainCommandTests
{
    [Fact]
    public async Task BenchTrainPrintsThroughputMemoryAndPhasesAsJson()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        string config = Path.Combine(ExternalTools.RepoRoot(), "configs", "models", "k2-test.json");
        int code = await CliApp.RunAsync(
            ["bench", "train", "--config", config, "--batch", "2", "--seq", "8", "--steps", "2", "--warmup", "1", "--json"],
            new CliContext(output, error));
        Assert.True(code == 0, error.ToString());
        using var doc = JsonDocument.Parse(output.ToString());
        var root = doc.RootElement;
        Assert.True(root.GetProperty("train_tokens_per_s").GetDouble() > 0);
        Assert.True(root.GetProperty("step_s").GetDouble() > 0);
        Assert.True(root.GetProperty("peak_memory_bytes").GetInt64() > 0);
        // Every step runs the optimizer, the attention core and the experts: each timed phase took some time.
        Assert.True(root.GetProperty("optimizer_s").GetDouble() > 0);
        var phases = root.GetProperty("phases_s");
        Assert.True(phases.GetProperty("attention_core_s").GetDouble() > 0);
        Assert.True(phases.GetProperty("moe_experts_s").GetDouble() > 0);
        // three MuonClip steps (the default) on fixed data lower the loss
        Assert.Equal("muonclip", root.GetProperty("optimizer").GetString());
        Assert.True(root.GetProperty("loss_last").GetDouble() < root.GetProperty("loss_first").GetDouble());
        Assert.Contains("step", error.ToString());
    }

    [Theory]
    [InlineData("muonclip", 3)]
    [InlineData("muon", 1)]
    [InlineData("adamw", 2)]
    public async Task BenchTrainReportsTheOptimizerBreakdownPerAccumulatedStep(string optimizer, int accum)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        string config = Path.Combine(ExternalTools.RepoRoot(), "configs", "models", "k2-test.json");
        int code = await CliApp.RunAsync(
            ["bench", "train", "--config", config, "--batch", "2", "--seq", "8", "--steps", "2", "--warmup", "1",
             "--optimizer", optimizer, "--accum", accum.ToString(System.Globalization.CultureInfo.InvariantCulture), "--json"],
            new CliContext(output, error));
        Assert.True(code == 0, error.ToString());
        using var doc = JsonDocument.Parse(output.ToString()); // exactly one JSON object: Parse rejects trailing text
        var root = doc.RootElement;
        Assert.Equal(optimizer, root.GetProperty("optimizer").GetString());
        Assert.Equal(accum, root.GetProperty("accum").GetInt32());
        Assert.Equal(accum * 2 * 8, root.GetProperty("tokens_per_step").GetInt32());
        double step = root.GetProperty("step_s").GetDouble(), ns = root.GetProperty("newton_schulz_s").GetDouble();
        double parts = root.GetProperty("forward_backward_s").GetDouble() + root.GetProperty("optimizer_s").GetDouble()
            + root.GetProperty("zero_grad_s").GetDouble();
        Assert.Equal(step, parts, 1e-4);
        Assert.Equal(root.GetProperty("optimizer_s").GetDouble(),
            ns + root.GetProperty("muon_other_s").GetDouble() + root.GetProperty("optimizer_rest_s").GetDouble() + root.GetProperty("qk_clip_s").GetDouble(), 1e-4);
        Assert.Equal(ns / step, root.GetProperty("ns_share_of_step").GetDouble(), 1e-3);
        Assert.Equal(accum * 2 * 8 / step, root.GetProperty("train_tokens_per_s").GetDouble(), 0.01 * accum * 2 * 8 / step);
        if (optimizer == "adamw")
        {
            Assert.Equal(0, ns);
        }
        else
        {
            Assert.True(ns > 0);
        }

        Assert.Contains($"× {accum} micro-batches", error.ToString());
    }

    [Fact]
    public async Task BenchTrainRejectsAnUnknownOptimizerAndAZeroAccumulation()
    {
        string config = Path.Combine(ExternalTools.RepoRoot(), "configs", "models", "k2-test.json");
        var error = new StringWriter();
        Assert.NotEqual(0, await CliApp.RunAsync(["bench", "train", "--config", config, "--optimizer", "sgd"], new CliContext(new StringWriter(), error)));
        Assert.Contains("sgd", error.ToString());
        error = new StringWriter();
        Assert.Equal(1, await CliApp.RunAsync(["bench", "train", "--config", config, "--accum", "0"], new CliContext(new StringWriter(), error)));
        Assert.Contains("--accum (0)", error.ToString());
    }

    [Fact]
    public async Task BenchTrainRejectsASequenceLongerThanTheModelsContext()
    {
        var error = new StringWriter();
        string config = Path.Combine(ExternalTools.RepoRoot(), "configs", "models", "k2-test.json");
        int code = await CliApp.RunAsync(["bench", "train", "--config", config, "--seq", "100000"], new CliContext(new StringWriter(), error));
        Assert.Equal(1, code);
        Assert.Contains("max_position_embeddings", error.ToString());
    }

    [Fact]
    public void AdamWMatchesTheFormulaAndSkipsNothing()
    {
        var p = new float[37];
        var g = new float[37];
        var m = new float[37];
        var v = new float[37];
        for (int i = 0; i < p.Length; i++)
        {
            p[i] = 0.1f * i - 1;
            g[i] = (float)Math.Sin(i);
        }

        var p0 = (float[])p.Clone();
        for (int step = 1; step <= 2; step++)
        {
            AdamW.Update(p, g, m, v, step, 0.01f, 0.9f, 0.95f, 1e-8f, 0.1f);
        }

        for (int i = 0; i < p.Length; i++)
        {
            // by hand, in double: two steps with the same gradient
            double mm = 0, vv = 0, pp = p0[i];
            for (int t = 1; t <= 2; t++)
            {
                mm = 0.9 * mm + 0.1 * g[i];
                vv = 0.95 * vv + 0.05 * g[i] * g[i];
                double mh = mm / (1 - Math.Pow(0.9, t)), vh = vv / (1 - Math.Pow(0.95, t));
                pp -= 0.01 * (mh / (Math.Sqrt(vh) + 1e-8) + 0.1 * pp);
            }

            Assert.Equal(pp, p[i], 1e-5);
        }
    }
}
