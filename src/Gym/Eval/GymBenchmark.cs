using System.Diagnostics;
using K2RL.Common.Chat;
using K2RL.Gym.Sandbox;
using K2RL.Gym.Tasks;

namespace K2RL.Gym.Eval;

/// <summary>One measured figure: what, the median and 90th percentile, in the unit named.</summary>
public sealed record BenchFigure(string Name, string Unit, double Median, double P90, int Samples);

/// <summary>
/// Measures the Gym's overheads: the time of one <c>Step</c> of the in-process text environments (target ≤ 50 µs), and
/// the end-to-end time of a trivial program in the bubblewrap sandbox (target ≤ 100 ms). Not a test: numbers depend
/// on the machine; docs/BENCHMARKS.md records them with the command.
/// </summary>
public static class GymBenchmark
{
    public static async Task<IReadOnlyList<BenchFigure>> StepOverheadAsync(GymRegistry registry, int episodes = 2000)
    {
        var figures = new List<BenchFigure>();
        foreach (string name in new[] { "arithmetic", "countdown", "list_ops" })
        {
            figures.Add(await MeasureAsync(registry, name, episodes, env => ((TaskEnvironment)env).Task!.Solution));
        }

        // A tool step: one lookup call, executed and answered with a tool message.
        figures.Add(await MeasureAsync(registry, "tool_use", episodes, env =>
        {
            string key = ToolUseGenerator.Table(((ToolTaskEnvironment)env).Task!).Keys.First();
            return ChatFormat.FormatToolCall("lookup", 0, new Dictionary<string, string> { ["key"] = key });
        }));
        return figures;
    }

    public static async Task<IReadOnlyList<BenchFigure>> SandboxAsync(ISandbox sandbox, int runs = 30)
    {
        var request = new SandboxRequest("python3", "print(1)\n");
        await sandbox.RunAsync(request);
        var ms = new List<double>();
        for (int i = 0; i < runs; i++)
        {
            var r = await sandbox.RunAsync(request);
            if (!r.Succeeded)
            {
                throw new InvalidOperationException($"sandbox benchmark run failed: {r.Status} {r.Stderr}");
            }

            ms.Add(r.Elapsed.TotalMilliseconds);
        }

        var registry = GymRegistry.CreateDefault(() => sandbox);
        var steps = new List<double>();
        for (int i = 0; i < Math.Max(3, runs / 5); i++)
        {
            await using var env = (TaskEnvironment)registry.CreateEnvironment("code");
            await env.ResetAsync(i);
            var watch = Stopwatch.StartNew();
            var step = await env.StepAsync(env.Task!.Solution);
            steps.Add(watch.Elapsed.TotalMilliseconds);
            if (step.Info.Correct != true)
            {
                throw new InvalidOperationException("reference program failed in the sandbox: " + step.Info.Data["reason"]);
            }
        }

        return
        [
            Figure("sandbox: trivial python3 program, end to end", "ms", ms),
            Figure("code env: one step (3 tests, run concurrently)", "ms", steps),
        ];
    }

    private static async Task<BenchFigure> MeasureAsync(GymRegistry registry, string name, int episodes, Func<IEnvironment, string> action)
    {
        var env = registry.CreateEnvironment(name);
        var actions = new string[256];
        for (int i = 0; i < actions.Length; i++)
        {
            await env.ResetAsync(i);
            actions[i] = action(env);
        }

        var us = new List<double>(episodes);
        for (int warm = 0; warm < 2; warm++)
        {
            us.Clear();
            for (int i = 0; i < episodes; i++)
            {
                await env.ResetAsync(i % actions.Length);
                long t0 = Stopwatch.GetTimestamp();
                await env.StepAsync(actions[i % actions.Length]);
                us.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
            }
        }

        await env.CloseAsync();
        return Figure($"{name}: one step", "us", us);
    }

    private static BenchFigure Figure(string name, string unit, List<double> values)
    {
        values.Sort();
        return new BenchFigure(name, unit, values[values.Count / 2], values[(int)(values.Count * 0.9)], values.Count);
    }
}
