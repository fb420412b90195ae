using System.CommandLine;
using System.Text.Json;
using K2RL.Model;
using K2RL.Model.Inference;
using K2RL.Rollout;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl bench decode --config C --batch B --prompt P --new N [--backend k2rl|onnxruntime] [--json]</c>: rollout prefill
/// and decode throughput (docs/BENCHMARKS.md, "Rollout"); with <c>--backend onnxruntime</c>, the same workload is then
/// served by ONNX Runtime from the exported model, in the same run (<see cref="OnnxDecodeBenchmark"/>).
/// </summary>
public sealed class BenchDecodeCommand : ICommandProvider
{
    public string Group => "bench";

    public IEnumerable<Command> Build(CliContext context)
    {
        var config = new Option<string>("--config") { Description = "Model config (random weights)", DefaultValueFactory = _ => "configs/models/k2-nano.json" };
        var batch = new Option<int>("--batch") { Description = "Sequences decoded together", DefaultValueFactory = _ => 32 };
        var prompt = new Option<int>("--prompt") { Description = "Prompt tokens per sequence", DefaultValueFactory = _ => 32 };
        var newTokens = new Option<int>("--new") { Description = "Tokens generated per sequence", DefaultValueFactory = _ => 64 };
        var seed = new Option<ulong>("--seed") { Description = "Seed for weights and prompts", DefaultValueFactory = _ => 1UL };
        var weights = WeightsOption.Create();
        var backend = new Option<string>("--backend")
        {
            Description = "k2rl: K2RL's engine; onnxruntime: K2RL's engine, then ONNX Runtime (CPU) on the exported model, same workload",
            DefaultValueFactory = _ => "k2rl",
        };
        backend.AcceptOnlyFromAmong("k2rl", "onnxruntime");
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var command = new Command("decode", "Rollout engine throughput: prefill and batched decode tokens per second")
        {
            config, batch, prompt, newTokens, seed, weights, backend, json,
        };
        command.SetAction(parse =>
        {
            var modelConfig = ModelConfig.Load(parse.GetValue(config)!);
            var r = DecodeBenchmark.Run(modelConfig, parse.GetValue(batch), parse.GetValue(prompt), parse.GetValue(newTokens), parse.GetValue(seed),
                line => context.Error.WriteLine(line), WeightPrecisions.Parse(parse.GetValue(weights)!));
            var ort = parse.GetValue(backend) == "onnxruntime"
                ? OnnxDecodeBenchmark.Run(modelConfig, r.Batch, r.PromptTokens, r.NewTokens, parse.GetValue(seed), line => context.Error.WriteLine(line))
                : null;
            if (parse.GetValue(json))
            {
                context.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    prefill_tokens_per_s = Math.Round(r.PrefillTokensPerSecond, 1),
                    decode_tokens_per_s = Math.Round(r.DecodeTokensPerSecond, 1),
                    batch = r.Batch,
                    prompt = r.PromptTokens,
                    @new = r.NewTokens,
                    threads = r.Threads,
                    weights = r.Weights.Name(),
                    prefill_tokens_per_cpu_s = Math.Round(r.PrefillTokensPerCpuSecond, 1),
                    decode_tokens_per_cpu_s = Math.Round(r.DecodeTokensPerCpuSecond, 1),
                    decode_model_share = Math.Round(r.DecodeModelShare, 3),
                    load_average = Environment.ProcessorCount > 0 && File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "",
                    decode_model_tokens_per_s = Math.Round(r.Batch * (r.NewTokens - 1) / r.DecodeModelSeconds, 1),
                    onnxruntime = ort is null ? null : new
                    {
                        prefill_tokens_per_s = Math.Round(ort.PrefillTokensPerSecond, 1),
                        decode_tokens_per_s = Math.Round(ort.DecodeTokensPerSecond, 1),
                        decode_model_tokens_per_s = Math.Round(ort.Batch * (ort.NewTokens - 1) / ort.DecodeModelSeconds, 1),
                        decode_model_share = Math.Round(ort.DecodeModelShare, 3),
                        threads = ort.Threads,
                        model_bytes = ort.ModelBytes,
                    },
                }));
            }
            else
            {
                context.Out.WriteLine($"prefill {r.PrefillTokensPerSecond,10:0} tokens/s  ({r.Batch} x {r.PromptTokens} tokens in {r.PrefillSeconds * 1e3:0.0} ms)");
                context.Out.WriteLine($"decode  {r.DecodeTokensPerSecond,10:0} tokens/s  ({r.Batch} x {r.NewTokens - 1} tokens in {r.DecodeSeconds * 1e3:0.0} ms, {r.Threads} threads, {r.Weights.Name()} weights)");
                context.Out.WriteLine($"per CPU-second: prefill {r.PrefillTokensPerCpuSecond:0}, decode {r.DecodeTokensPerCpuSecond:0} tokens; {r.DecodeModelShare:P0} of decode time in the model's DecodeStep");
                if (ort is not null)
                {
                    context.Out.WriteLine($"onnxruntime prefill {ort.PrefillTokensPerSecond,10:0} tokens/s  ({ort.Batch} x {ort.PromptTokens} tokens in {ort.PrefillSeconds * 1e3:0.0} ms)");
                    context.Out.WriteLine($"onnxruntime decode  {ort.DecodeTokensPerSecond,10:0} tokens/s  ({ort.Batch} x {ort.NewTokens - 1} tokens in {ort.DecodeSeconds * 1e3:0.0} ms, {ort.Threads} threads, "
                                          + $"{ort.DecodeModelShare:P0} in Run; dense MoE: every expert on every token)");
                }
            }

            return 0;
        });
        yield return command;
    }
}
