using System.CommandLine;
using K2RL.Trainer.Plotting;

namespace K2RL.Cli.Commands;

/// <summary><c>k2rl plot --run-dir runs/NAME [--run-dir runs/OTHER] [--out DIR] [--tau 30]</c>: SVG curves from metrics.jsonl.</summary>
public sealed class PlotCommand : ICommandProvider
{
    public string Group => "";

    internal sealed record PlotOptions(string[] RunDirs, string? Out, double? Tau, int Smooth);

    public IEnumerable<Command> Build(CliContext context)
    {
        var runDir = new Option<string[]>("--run-dir") { Description = "Run directory; repeat it to overlay runs", Required = true };
        var output = new Option<string?>("--out") { Description = "Where the SVG files go (default: RUN_DIR/plots of the first run)" };
        var tau = new Option<double?>("--tau") { Description = "Draw the QK-Clip threshold on the max-logit chart" };
        var smooth = new Option<int>("--smooth") { Description = "Moving-average window for loss, balance and throughput", DefaultValueFactory = _ => 1 };
        var command = new Command("plot", "Draw a run's curves (loss, max logit, expert balance, throughput) as SVG") { runDir, output, tau, smooth };
        command.SetAction(parse => Run(context, new PlotOptions(parse.GetValue(runDir)!, parse.GetValue(output), parse.GetValue(tau), parse.GetValue(smooth))));
        yield return command;
    }

    internal static int Run(CliContext context, PlotOptions options)
    {
        string outDir = options.Out ?? Path.Combine(options.RunDirs[0], "plots");
        var files = options.RunDirs.Length == 1 && RlPlots.IsRlRun(options.RunDirs[0])
            ? RlPlots.Draw(options.RunDirs[0], outDir)
            : RunPlots.Draw(options.RunDirs, outDir, options.Tau, Math.Max(1, options.Smooth));
        foreach (string file in files)
        {
            context.Out.WriteLine(file);
        }

        return 0;
    }
}
