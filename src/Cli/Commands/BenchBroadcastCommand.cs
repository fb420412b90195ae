using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using K2RL.CheckpointEngine;
using K2RL.Model;
using K2RL.Rollout;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl bench broadcast [--json]</c>: the checkpoint engine's transports (in-process, shared memory, loopback network
/// to 1 receiver and to 3 in a chain and in a tree; f32 and bf16) for k2-nano's buffer and a larger synthetic one, beside a memcpy of the
/// same bytes in the same run; and what a swap costs a generating rollout engine (docs/BENCHMARKS.md, "Checkpoint engine").
/// </summary>
public sealed class BenchBroadcastCommand : ICommandProvider
{
    public string Group => "bench";

    public IEnumerable<Command> Build(CliContext context)
    {
        var config = new Option<string>("--config") { Description = "Model whose parameter buffer is broadcast", DefaultValueFactory = _ => "configs/models/k2-nano.json" };
        var largeMb = new Option<int>("--large-mb") { Description = "The larger synthetic buffer, MB of fp32 (0: skip)", DefaultValueFactory = _ => 1024 };
        var repeats = new Option<int>("--repeats") { Description = "Timed repeats per figure (the best is kept)", DefaultValueFactory = _ => 3 };
        var bucketMib = new Option<double>("--bucket-mib") { Description = "Bucket cap, MiB", DefaultValueFactory = _ => BucketPlan.DefaultCapBytes / 1048576.0 };
        var fanout = new Option<int>("--fanout") { Description = "The tree relay's fan-out (the publisher's and each hop's)", DefaultValueFactory = _ => 2 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var command = new Command("broadcast", "Checkpoint engine: in-process, shared-memory and network weight broadcast vs memcpy; swap cost in a decode step")
        {
            config, largeMb, repeats, bucketMib, fanout, json,
        };
        command.SetAction(async (parse, ct) =>
        {
            var model = ModelConfig.Load(parse.GetValue(config)!);
            var layout = new ParameterLayout(model);
            int n = Math.Max(1, parse.GetValue(repeats));
            long cap = (long)(parse.GetValue(bucketMib) * 1048576);
            int k = Math.Max(1, parse.GetValue(fanout));
            void Log(string line) => context.Error.WriteLine(line);
            string name = Path.GetFileNameWithoutExtension(parse.GetValue(config)!);
            // A whole untimed pass first: the gRPC, Kestrel and copy paths start in tier-0 code, and whichever figure ran
            // first measured the JIT (a transport 2-4x slower first than second in the same process).
            Log("warm-up pass (not reported):");
            await BroadcastBenchmark.RunAsync(name, layout.TotalLength, layout.ToTensorSpecs(), n, cap, k, Log);
            var cases = new List<BroadcastFigures>
            {
                await BroadcastBenchmark.RunAsync(name, layout.TotalLength, layout.ToTensorSpecs(), n, cap, k, Log),
            };
            if (parse.GetValue(largeMb) is > 0 and int mb)
            {
                const long tensor = 1L << 20;   // 4 MiB tensors
                int count = (int)Math.Max(1, mb * 1_000_000L / (tensor * sizeof(float)));
                cases.Add(await BroadcastBenchmark.RunAsync($"synthetic-{mb}mb", count * tensor, TensorSpec.Synthetic(count, tensor), n, cap, k, Log));
            }

            var swap = SwapCost(model, layout, n);
            Log($"swap: decode step {swap.StepMs:0.00} ms, step with a swap {swap.SwapStepMs:0.00} ms");
            string load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "";
            if (parse.GetValue(json))
            {
                context.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    cases = cases.Select(Json).ToList(),
                    decode_step_ms = Math.Round(swap.StepMs, 3),
                    decode_step_with_swap_ms = Math.Round(swap.SwapStepMs, 3),
                    swap_ms = Math.Round(swap.SwapStepMs - swap.StepMs, 3),
                    bucket_cap_bytes = cap,
                    tree_fanout = k,
                    load_average = load,
                }));
            }
            else
            {
                foreach (var c in cases)
                {
                    context.Out.WriteLine($"{c.Name}: {c.Parameters * 4 / 1e6:0.0} MB fp32, {c.Buckets} buckets, memcpy {c.MemcpyMs:0.00} ms = {c.MemcpyGbPerS:0.00} GB/s");
                    foreach (var d in c.Dtypes)
                    {
                        context.Out.WriteLine($"  {d.Dtype}: wire {d.WireBytes / 1e6:0.0} MB  inproc {d.InprocMs:0.00} ms  shm receive {d.ShmGbPerS:0.00} GB/s (end to end {d.ShmEndToEndGbPerS:0.00})  net 1 {d.Net1.GbPerS:0.00} GB/s  net 3 chain {d.Net3Chain.GbPerS:0.00} / tree {d.Net3Tree.GbPerS:0.00} GB/s per receiver  (gRPC only: 1 {d.Grpc1.GbPerS:0.00}, chain {d.Grpc3Chain.GbPerS:0.00})  fetch {d.FetchGbPerS:0.00} GB/s");
                    }
                }

                context.Out.WriteLine($"swap: a decode step {swap.StepMs:0.00} ms, a step that takes a new version {swap.SwapStepMs:0.00} ms (load {load})");
            }

            return 0;
        });
        yield return command;
    }

    // A figure skipped (NaN: not enough free memory) is null.
    private static double? R(double x) => double.IsFinite(x) ? Math.Round(x, 3) : null;

    private static object Json(BroadcastFigures c) => new
    {
        name = c.Name,
        parameters = c.Parameters,
        fp32_bytes = c.Parameters * 4,
        buckets = c.Buckets,
        memcpy_ms = R(c.MemcpyMs),
        memcpy_gb_per_s = R(c.MemcpyGbPerS),
        dtypes = c.Dtypes.Select(d => new
        {
            dtype = d.Dtype,
            wire_bytes = d.WireBytes,
            inproc_ms = R(d.InprocMs),
            inproc_vs_memcpy = R(d.InprocMs / c.MemcpyMs),
            shm_publish_ms = R(d.ShmPublishMs),
            shm_receive_ms = R(d.ShmReceiveMs),
            shm_receive_cpu_ms = R(d.ShmReceiveCpuMs),
            shm_memcpy_cpu_ms = R(d.ShmMemcpyCpuMs),
            shm_vs_memcpy_cpu = R(d.ShmMemcpyCpuMs / d.ShmReceiveCpuMs),
            shm_gb_per_s = R(d.ShmGbPerS),
            shm_vs_memcpy = R(d.ShmGbPerS / c.MemcpyGbPerS),
            shm_end_to_end_gb_per_s = R(d.ShmEndToEndGbPerS),
            net_1_ms = R(d.Net1.Ms),
            net_gb_per_s = R(d.Net1.GbPerS),
            net_1_vs_memcpy = R(d.Net1.GbPerS / c.MemcpyGbPerS),
            net_1_cpu_ms = R(d.Net1.CpuMs),
            net_3_chain_ms = R(d.Net3Chain.Ms),
            net_3_chain_gb_per_s = R(d.Net3Chain.GbPerS),
            net_3_chain_vs_memcpy = R(d.Net3Chain.GbPerS / c.MemcpyGbPerS),
            net_3_chain_cpu_ms = R(d.Net3Chain.CpuMs),
            net_3_tree_ms = R(d.Net3Tree.Ms),
            net_3_tree_gb_per_s = R(d.Net3Tree.GbPerS),
            net_3_tree_vs_memcpy = R(d.Net3Tree.GbPerS / c.MemcpyGbPerS),
            net_3_tree_cpu_ms = R(d.Net3Tree.CpuMs),
            net_grpc_1_gb_per_s = R(d.Grpc1.GbPerS),
            net_grpc_1_cpu_ms = R(d.Grpc1.CpuMs),
            net_grpc_3_chain_gb_per_s = R(d.Grpc3Chain.GbPerS),
            net_grpc_3_chain_cpu_ms = R(d.Grpc3Chain.CpuMs),
            net_fetch_ms = R(d.FetchMs),
            net_fetch_gb_per_s = R(d.FetchGbPerS),
        }).ToList(),
    };

    // A rollout engine generating 8 sequences: the median decode step, and the best step that took a new version at its
    // boundary (in-process push; the cache is not recomputed, so the step pays the swap alone).
    private static (double StepMs, double SwapStepMs) SwapCost(ModelConfig config, ParameterLayout layout, int repeats)
    {
        var weights = new K2Model(config);
        weights.InitializeWeights(7);
        var channel = new InProcessWeightChannel();
        var engine = new RolloutEngine(new ModelDecoder(config, 8), new EngineOptions { RecomputeCacheOnNewWeights = false }, channel, -1);
        channel.Publish(0, weights.Parameters);
        engine.SyncWeights();
        for (int i = 0; i < 8; i++)
        {
            engine.Submit(new GenerationRequest($"s{i}", [1, 2, 3, 4], new SamplingParams { MaxTokens = 200, Seed = (ulong)i, StopOnRepetition = false }));
        }

        engine.Step();   // prefill
        var steps = new List<double>();
        double swap = double.MaxValue;
        for (int r = 0; r < 2 * repeats + 6; r++)
        {
            if (r % 2 == 1)
            {
                channel.Publish(r, weights.Parameters);
            }

            long t0 = Stopwatch.GetTimestamp();
            engine.Step();
            double ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            if (r % 2 == 1)
            {
                swap = Math.Min(swap, ms);
            }
            else
            {
                steps.Add(ms);
            }
        }

        steps.Sort();
        return (steps[steps.Count / 2], swap);
    }
}
