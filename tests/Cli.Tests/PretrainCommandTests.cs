namespace K2RL.Cli.Tests;

public class PretrainCommandTests
{
    private static async Task<(int Code, string Out, string Err)> Cli(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = await CliApp.RunAsync(args, new CliContext(output, error));
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public async Task Pretrain_RunsToMaxSteps_WritesTheRunDirectory_AndPlotDrawsIt()
    {
        K2RL.Tests.Shared.ExternalTools.RequireFonts();   // plot's texts need a font
        using var jobs = new PretrainTestJobs(steps: 10, every: 5);
        string run = jobs.RunDir("r");
        var (code, stdout, _) = await Cli("pretrain", "--job", jobs.JobPath, "--run-dir", run, "--max-steps", "6");
        Assert.Equal(0, code);
        Assert.Contains("\"reason\":\"maxsteps\"", stdout);
        Assert.Equal(6, PretrainTestJobs.Losses(run).Length);
        Assert.Equal("checkpoints/step-6", File.ReadAllText(Path.Combine(run, "LATEST")).Trim());
        foreach (string f in new[] { "model.safetensors", "config.json", "optimizer.bin", "state.json", "MANIFEST", "tiktoken.model" })
        {
            Assert.True(File.Exists(Path.Combine(run, "checkpoints/step-6", f)), f);
        }

        (code, stdout, _) = await Cli("pretrain", "--job", jobs.JobPath, "--run-dir", run, "--resume");
        Assert.Equal(0, code);
        Assert.Contains("\"reason\":\"completed\"", stdout);
        Assert.Equal(10, PretrainTestJobs.Losses(run).Length);

        // the log (what a non-terminal stderr shows) names the step each run stops at, and times every progress line
        var messages = File.ReadAllLines(Path.Combine(run, "logs", "pretrain.clef"))        // compact JSON: @m is the rendered message
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("@m").GetString()!).ToList();
        Assert.Contains("pretraining from step 0 to 6 (--max-steps; the job has 10)", messages);
        Assert.Contains("pretraining from step 6 to 10", messages);
        var progress = messages.Where(m => m.StartsWith("step ", StringComparison.Ordinal)).ToList();
        Assert.Contains(progress, m => m.StartsWith("step 6/10 ", StringComparison.Ordinal) && m.EndsWith(" eta 0:00:00", StringComparison.Ordinal));
        Assert.All(progress, m => Assert.Matches(@" elapsed \d+:\d\d:\d\d eta \d+:\d\d:\d\d$", m));

        (code, stdout, _) = await Cli("plot", "--run-dir", run, "--tau", "100");
        Assert.Equal(0, code);
        string plots = Path.Combine(run, "plots");
        foreach (string chart in new[] { "loss", "max_logit", "balance", "throughput" })
        {
            Assert.Contains(Path.Combine(plots, chart + ".png"), stdout);
            Assert.Contains(Path.Combine(plots, chart + ".svg"), stdout);
            Assert.Equal((800, 450), Figures.PngSize(Path.Combine(plots, chart + ".png")));
            Assert.Single(Figures.ReadSvg(Path.Combine(plots, chart + ".svg")).LineColors);   // one run, one line
        }

        Assert.Contains("tau = 100", Figures.ReadSvg(Path.Combine(plots, "max_logit.svg")).Strings);
    }

    [Fact]
    public async Task Pretrain_BadJob_IsRejectedBeforeAnyWork_NamingKeyAndLine()
    {
        using var jobs = new PretrainTestJobs();
        File.AppendAllText(jobs.JobPath, "\nlearning_rate: 3\n");
        string run = jobs.RunDir("never");
        var (code, _, stderr) = await Cli("pretrain", "--job", jobs.JobPath, "--run-dir", run);
        Assert.Equal(1, code);
        int line = Array.FindIndex(File.ReadAllLines(jobs.JobPath), l => l.StartsWith("learning_rate", StringComparison.Ordinal)) + 1;
        Assert.True(line > 1 && stderr.Contains($"job.yaml:{line}:"), stderr);
        Assert.Contains("unknown key \"learning_rate\"", stderr);
        Assert.False(Directory.Exists(run), "nothing may be written for a rejected job");
    }

    [Fact]
    public async Task Pretrain_ExistingRunWithoutResume_IsRefused()
    {
        using var jobs = new PretrainTestJobs(steps: 2, every: 2);
        string run = jobs.RunDir("r");
        Assert.Equal(0, (await Cli("pretrain", "--job", jobs.JobPath, "--run-dir", run)).Code);
        var (code, _, stderr) = await Cli("pretrain", "--job", jobs.JobPath, "--run-dir", run);
        Assert.Equal(1, code);
        Assert.Contains("--resume", stderr);
    }

    [Fact]
    public async Task Plot_WithoutMetrics_Fails()
    {
        var (code, _, stderr) = await Cli("plot", "--run-dir", Path.Combine(Path.GetTempPath(), "no-such-run-" + Guid.NewGuid().ToString("N")));
        Assert.Equal(1, code);
        Assert.Contains("no metrics.jsonl", stderr);
    }
}
