using System.CommandLine;
using System.Text.Json;
using K2RL.Model;
using K2RL.Rollout;

namespace K2RL.Cli.Commands;

/// <summary><c>k2rl bench rpc [--json]</c>: gRPC round-trip latency of a gym step and streaming Generate figures on loopback (docs/BENCHMARKS.md, "RPC").</summary>
public sealed class BenchRpcCommand : ICommandProvider
{
    public string Group => "bench";

    public IEnumerable<Command> Build(CliContext context)
    {
        var config = new Option<string>("--config") { Description = "Model config of the Generate server (random weights)", DefaultValueFactory = _ => "configs/models/k2-test.json" };
        var steps = new Option<int>("--steps") { Description = "Gym step round trips measured", DefaultValueFactory = _ => 2000 };
        var streams = new Option<int>("--streams") { Description = "Generate calls measured, one after another", DefaultValueFactory = _ => 100 };
        var tokens = new Option<int>("--tokens") { Description = "Tokens generated per call", DefaultValueFactory = _ => 48 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var command = new Command("rpc", "gRPC on loopback: gym step round-trip latency, streaming Generate time-to-first-token and tokens/s")
        {
            config, steps, streams, tokens, json,
        };
        command.SetAction(async (parse, ct) =>
        {
            var r = await RpcBenchmark.RunAsync(ModelConfig.Load(parse.GetValue(config)!), parse.GetValue(steps), parse.GetValue(streams),
                parse.GetValue(tokens), line => context.Error.WriteLine(line));
            if (parse.GetValue(json))
            {
                context.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    gym_step_p50_us = Math.Round(r.StepP50Us, 1),
                    gym_step_p99_us = Math.Round(r.StepP99Us, 1),
                    steps = r.Steps,
                    generate_ttft_p50_us = Math.Round(r.TtftP50Us, 1),
                    generate_ttft_p99_us = Math.Round(r.TtftP99Us, 1),
                    generate_tokens_per_s = Math.Round(r.StreamTokensPerSecond, 1),
                    streams = r.Streams,
                    tokens = r.TokensPerStream,
                    load_average = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "",
                }));
            }
            else
            {
                context.Out.WriteLine($"gym step round trip    p50 {r.StepP50Us,9:0.0} us   p99 {r.StepP99Us,9:0.0} us   (n={r.Steps})");
                context.Out.WriteLine($"Generate over gRPC     ttft p50 {r.TtftP50Us,9:0.0} us   p99 {r.TtftP99Us,9:0.0} us   {r.StreamTokensPerSecond,8:0} tokens/s   ({r.Streams} x {r.TokensPerStream} tokens)");
            }

            return 0;
        });
        yield return command;
    }
}
