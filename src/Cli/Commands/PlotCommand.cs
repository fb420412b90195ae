using System.CommandLine;
using K2RL.Trainer.Plotting;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl plot --run-dir runs/NAME [--run-dir runs/OTHER] [--out DIR] [--tau 30] [--smooth 10] [--format both|png|svg]</c>:
/// PNG and SVG curves from metrics.jsonl, drawn with ScottPlot.
/// </summary>
public sealed class PlotCommand : ICommandProvider
{
    public string Group => "";

    internal sealed record PlotOptions(string[] RunDirs, string? Out, double? Tau, int Smooth, PlotFormat Format = PlotFormat.Both);

    public IEnumerable<Command> Build(CliContext context)
    {
        var runDir = new Option<string[]>("--run-dir") { Description = "Run directory; repeat it to overlay runs", Required = true };
        var output = new Option<string?>("--out") { Description = "Where the figures go (default: RUN_DIR/plots of the first run)" };
        var tau = new Option<double?>("--tau") { Description = "Draw the QK-Clip threshold on the max-logit chart" };
        var smooth = new Option<int>("--smooth") { Description = "Moving-average window for loss, balance and throughput", DefaultValueFactory = _ => 1 };
        var format = new Option<string>("--format") { Description = "Files per figure: both (NAME.png and NAME.svg), png or svg", DefaultValueFactory = _ => "both" };
        format.AcceptOnlyFromAmong("both", "png", "svg");
        var command = new Command("plot", "Draw a run's curves (pretraining and SFT: loss, max logit, expert balance, throughput, SFT's held-out loss and accuracy; RL: reward, accuracy, length, temperature, timing) as PNG and SVG")
        {
            runDir, output, tau, smooth, format,
        };
        command.SetAction(parse => Run(context, new PlotOptions(parse.GetValue(runDir)!, parse.GetValue(output), parse.GetValue(tau), parse.GetValue(smooth),
            Enum.Parse<PlotFormat>(parse.GetValue(format)!, ignoreCase: true))));
        yield return command;
    }

    internal static int Run(CliContext context, PlotOptions options)
    {
        string outDir = options.Out ?? Path.Combine(options.RunDirs[0], "plots");
        WarnIfNoFonts(context);
        var files = options.RunDirs.Length == 1 && RlPlots.IsRlRun(options.RunDirs[0])
            ? RlPlots.Draw(options.RunDirs[0], outDir, options.Format)
            : RunPlots.Draw(options.RunDirs, outDir, options.Tau, Math.Max(1, options.Smooth), options.Format);
        foreach (string file in files)
        {
            context.Out.WriteLine(file);
        }

        return 0;
    }

    /// <summary>Says on stderr when the figures will have no text (SkiaSharp finds no font under /usr/share/fonts).</summary>
    internal static void WarnIfNoFonts(CliContext context)
    {
        if (!LineChart.HasFonts)
        {
            context.Error.WriteLine("warning: no fonts under /usr/share/fonts, so the figures have no text (titles, labels, ticks, legend); install one, e.g. apt-get install fonts-dejavu-core");
        }
    }
}
