using System.CommandLine;
using System.Text.Json;
using K2RL.Gym;
using K2RL.Gym.Eval;
using K2RL.Gym.Sandbox;

namespace K2RL.Cli.Commands;

/// <summary><c>k2rl bench gym [--json]</c>: step overhead of the text environments and sandbox latency (docs/BENCHMARKS.md, "Gym").</summary>
public sealed class BenchGymCommand : ICommandProvider
{
    public string Group => "bench";

    public IEnumerable<Command> Build(CliContext context)
    {
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var episodes = new Option<int>("--episodes") { Description = "Steps measured per text environment", DefaultValueFactory = _ => 5000 };
        var runs = new Option<int>("--runs") { Description = "Sandboxed runs measured", DefaultValueFactory = _ => 30 };
        var noSandbox = new Option<bool>("--no-sandbox") { Description = "Skip the sandbox figures" };
        var command = new Command("gym", "Gym overheads: text-environment step time and sandboxed-program latency") { json, episodes, runs, noSandbox };
        command.SetAction(async (parse, ct) =>
        {
            var figures = new List<BenchFigure>();
            context.Error.WriteLine("measuring text-environment steps...");
            figures.AddRange(await GymBenchmark.StepOverheadAsync(GymRegistry.CreateDefault(), parse.GetValue(episodes)));
            if (!parse.GetValue(noSandbox))
            {
                context.Error.WriteLine("measuring the bubblewrap sandbox...");
                figures.AddRange(await GymBenchmark.SandboxAsync(new BubblewrapSandbox(), parse.GetValue(runs)));
            }

            if (parse.GetValue(json))
            {
                context.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    figures = figures.Select(f => new { name = f.Name, unit = f.Unit, median = f.Median, p90 = f.P90, samples = f.Samples }),
                }));
            }
            else
            {
                foreach (var f in figures)
                {
                    context.Out.WriteLine($"{f.Name,-52} median {f.Median,9:0.0} {f.Unit}   p90 {f.P90,9:0.0} {f.Unit}   (n={f.Samples})");
                }
            }

            return 0;
        });
        yield return command;
    }
}
