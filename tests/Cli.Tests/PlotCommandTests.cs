using System.Globalization;
using System.Text.RegularExpressions;
using K2RL.Trainer.Pretraining;

namespace K2RL.Cli.Tests;

public sealed class PlotCommandTests : IDisposable
{
    private readonly string run = Path.Combine(Path.GetTempPath(), "k2rl-plot-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(run))
        {
            Directory.Delete(run, recursive: true);
        }
    }

    /// <summary>
    /// A loss that falls from about 10.5 to about 1.6 (a first step near ln V, then a long tail) is drawn on a log
    /// axis with 1-2-5 ticks ending at the ticks around the data (1 and 20, not 0 and 12), spaced by their logarithms,
    /// so the tail is not squashed against the bottom.
    /// </summary>
    [Fact]
    public async Task TheLossAxisIsLogarithmicWithTicksAroundTheData()
    {
        Directory.CreateDirectory(run);
        File.WriteAllLines(Path.Combine(run, "metrics.jsonl"), Enumerable.Range(1, 100).Select(i =>
            new StepMetrics { Step = i, Loss = 1.6f + 8.9f * MathF.Exp(-(i - 1) / 5f), MaxLogit = 5, ExpertLoadMaxOverMean = 1.2, TokensPerS = 1000 }.ToJson()));
        var (code, _, err) = await ModelCommandInfoTests.Run("plot", "--run-dir", run);
        Assert.True(code == 0, err);

        string svg = File.ReadAllText(Path.Combine(run, "plots", "loss.svg"));
        // y-axis labels: right-aligned text left of the plot, placed 4 px below their grid line
        var ticks = Regex.Matches(svg, "<text x=\"72\" y=\"([0-9.]+)\" text-anchor=\"end\">([^<]+)</text>")
            .Select(m => (Y: double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) - 4, Label: m.Groups[2].Value)).ToList();
        Assert.Equal(["1", "2", "5", "10", "20"], ticks.Select(t => t.Label));
        double decade = ticks[0].Y - ticks[3].Y;
        Assert.True(decade > 0, svg);
        Assert.Equal(Math.Log10(2), (ticks[0].Y - ticks[1].Y) / decade, 2);
        Assert.Equal(Math.Log10(5), (ticks[0].Y - ticks[2].Y) / decade, 2);
        Assert.Equal(Math.Log10(20), (ticks[0].Y - ticks[4].Y) / decade, 2);
        Assert.Contains("log scale", svg);
    }
}
