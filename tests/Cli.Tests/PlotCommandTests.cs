using System.Text.Json.Nodes;
using K2RL.Trainer.Pretraining;

namespace K2RL.Cli.Tests;

public sealed class PlotCommandTests : IDisposable
{
    private readonly string root = Path.Combine(Path.GetTempPath(), "k2rl-plot-" + Guid.NewGuid().ToString("N"));

    public PlotCommandTests() => K2RL.Tests.Shared.ExternalTools.RequireFonts();   // the SVGs' texts need a font

    public void Dispose()
    {
        if (Directory.Exists(root))
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private string Run(string name, IEnumerable<string> lines)
    {
        string dir = Path.Combine(root, name);
        Directory.CreateDirectory(dir);
        File.WriteAllLines(Path.Combine(dir, "metrics.jsonl"), lines);
        return dir;
    }

    private string PretrainRun(string name, int steps = 100, float maxLogit = 5) => Run(name, Enumerable.Range(1, steps).Select(i =>
        new StepMetrics { Step = i, Loss = 1.6f + 8.9f * MathF.Exp(-(i - 1) / 5f), MaxLogit = maxLogit * i, ExpertLoadMaxOverMean = 1.2, TokensPerS = 1000 + i }.ToJson()));

    /// <summary>
    /// A loss that falls from about 10.5 to about 1.6 (a first step near ln V, then a long tail) is drawn on a log
    /// axis with 1-2-5 ticks ending at the ticks around the data (1 and 20, not 0 and 12), spaced by their logarithms,
    /// so the tail is not squashed against the bottom.
    /// </summary>
    [Fact]
    public async Task TheLossAxisIsLogarithmicWithTicksAroundTheData()
    {
        string run = PretrainRun("r");
        var (code, _, err) = await ModelCommandInfoTests.Run("plot", "--run-dir", run, "--format", "svg");
        Assert.True(code == 0, err);

        var svg = Figures.ReadSvg(Path.Combine(run, "plots", "loss.svg"));
        // the y-axis tick labels: the numeric texts that share one x (the x-axis ones are spread along the axis)
        var ticks = svg.Texts.Where(t => double.TryParse(t.Text, System.Globalization.CultureInfo.InvariantCulture, out _))
            .GroupBy(t => t.X).Single(g => g.Count() >= 3).OrderByDescending(t => t.Y).ToList();
        Assert.Equal(["1", "2", "5", "10", "20"], ticks.Select(t => t.Text));
        double decade = ticks[0].Y - ticks[3].Y;
        Assert.True(decade > 0);
        Assert.Equal(Math.Log10(2), (ticks[0].Y - ticks[1].Y) / decade, 2);
        Assert.Equal(Math.Log10(5), (ticks[0].Y - ticks[2].Y) / decade, 2);
        Assert.Equal(Math.Log10(20), (ticks[0].Y - ticks[4].Y) / decade, 2);
        Assert.Contains("cross-entropy (nats/token, log scale)", svg.Strings);
    }

    /// <summary>
    /// Two runs overlaid: every figure is written as PNG and SVG (the default), each with its title, axis labels, a
    /// line and a legend entry per run, and the tau line on the max-logit figure.
    /// </summary>
    [Fact]
    public async Task OverlaidRunsGiveEveryFigureAsPngAndSvgWithALinePerRun()
    {
        string a = PretrainRun("run-a"), b = PretrainRun("run-b", steps: 60, maxLogit: 2);
        string outDir = Path.Combine(root, "out");
        var (code, stdout, err) = await ModelCommandInfoTests.Run("plot", "--run-dir", a, "--run-dir", b, "--out", outDir, "--tau", "30", "--smooth", "5");
        Assert.True(code == 0, err);
        string[] figures = ["loss", "max_logit", "balance", "throughput"];
        Assert.Equal(figures.SelectMany(f => new[] { f + ".png", f + ".svg" }).Order(), Directory.GetFiles(outDir).Select(Path.GetFileName).Order());
        Assert.Equal(figures.SelectMany(f => new[] { Path.Combine(outDir, f + ".png"), Path.Combine(outDir, f + ".svg") }),
            stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

        Figures.AssertFigure(outDir, "loss", "Training loss (mean of 5 steps)", "step", "cross-entropy (nats/token, log scale)", "run-a", "run-b");
        var logit = Figures.AssertFigure(outDir, "max_logit", "Max attention logit (over layers and heads, before QK-Clip)", "step", "max pre-softmax logit (log scale)", "run-a", "run-b");
        Assert.Contains("tau = 30", logit.Strings);
        Figures.AssertFigure(outDir, "balance", "Expert load balance (mean of 5 steps)", "step", "max / mean expert load (worst MoE layer)", "run-a", "run-b");
        Figures.AssertFigure(outDir, "throughput", "Throughput (mean of 5 steps)", "step", "tokens / s", "run-a", "run-b");
    }

    [Theory]
    [InlineData("png")]
    [InlineData("svg")]
    public async Task FormatWritesOnlyThatKind(string format)
    {
        string run = PretrainRun("r", steps: 5);
        var (code, _, err) = await ModelCommandInfoTests.Run("plot", "--run-dir", run, "--format", format);
        Assert.True(code == 0, err);
        Assert.Equal(new[] { "balance", "loss", "max_logit", "throughput" }.Select(f => $"{f}.{format}"),
            Directory.GetFiles(Path.Combine(run, "plots")).Select(Path.GetFileName).Order());
    }

    [Fact]
    public async Task AnUnknownFormatIsRefused()
    {
        string run = PretrainRun("r", steps: 5);
        var (code, _, err) = await ModelCommandInfoTests.Run("plot", "--run-dir", run, "--format", "jpg");
        Assert.NotEqual(0, code);
        Assert.Contains("jpg", err);
        Assert.False(Directory.Exists(Path.Combine(run, "plots")));
    }

    /// <summary>An RL run's metrics give its five figures, with a line per env and per held-out set (null values left out).</summary>
    [Fact]
    public async Task AnRlRunGivesItsFiguresWithALinePerEnvAndHeldOutSet()
    {
        string run = Run("rl", Enumerable.Range(1, 8).Select(i => new JsonObject
        {
            ["iteration"] = i, ["temperature"] = 1.2 - 0.05 * i,
            ["generate_s"] = 2.0, ["score_s"] = 0.1, ["train_s"] = 5.0 + i, ["push_s"] = 0.3, ["other_s"] = 0.2,
            ["envs"] = new JsonObject
            {
                ["arithmetic"] = new JsonObject { ["reward_mean"] = 0.1 * i, ["accuracy"] = 0.05 * i, ["response_tokens_mean"] = 20 + i },
                ["countdown"] = new JsonObject { ["reward_mean"] = 0.02 * i, ["accuracy"] = 0.01 * i, ["response_tokens_mean"] = 40 - i },
            },
            ["held_out"] = new JsonObject { ["arithmetic/d1"] = i % 4 == 0 ? 0.1 * i : null, ["countdown/d1"] = i % 4 == 0 ? 0.05 * i : null },
        }.ToJsonString()));
        var (code, stdout, err) = await ModelCommandInfoTests.Run("plot", "--run-dir", run);
        Assert.True(code == 0, err);
        string plots = Path.Combine(run, "plots");
        Assert.Equal(10, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);

        Figures.AssertFigure(plots, "reward", "Mean reward per env (after budget control)", "iteration", "reward", "arithmetic", "countdown");
        Figures.AssertFigure(plots, "accuracy", "Accuracy: training samples per env, and held-out (greedy)", "iteration", "accuracy",
            "arithmetic (train)", "countdown (train)", "arithmetic/d1 (held-out)", "countdown/d1 (held-out)");
        Figures.AssertFigure(plots, "length", "Response length per env", "iteration", "tokens (mean)", "arithmetic", "countdown");
        Figures.AssertFigure(plots, "temperature", "Sampling temperature", "iteration", "temperature", "temperature");
        Figures.AssertFigure(plots, "timing", "Time per iteration by phase", "iteration", "seconds", "generate_s", "score_s", "train_s", "push_s", "other_s");
    }
}
