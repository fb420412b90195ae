using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using K2RL.Common.Metrics;
using K2RL.Common.Redis;
using K2RL.Gym;
using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Model.Tokenization;
using K2RL.Rollout.Workers;
using K2RL.Trainer.Pretraining;
using K2RL.Trainer.Rl;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl bench rl [--base DIR] [--iterations N] [--workers N] [--json]</c>: RL iterations of the real job (k2-nano,
/// random weights and the byte-level tokenizer unless a base is given) and where their time goes: the shares of
/// generate / score / train / push / other, samples and generated tokens per second. The overhead target: push + other
/// ≤ 10% of an iteration. With <c>--workers N</c> the same job runs again with 1..N rollout-worker processes on a
/// redis-server the bench starts (weights through shared memory), and the queue's added latency per item is measured:
/// on that server (AOF with fsync <c>everysec</c>, as deploy/ runs Redis) and on a second one with fsync <c>always</c>
/// (every write on disk before its reply: three fsyncs per item).
/// </summary>
public sealed class BenchRlCommand : ICommandProvider
{
    public string Group => "bench";

    public IEnumerable<Command> Build(CliContext context)
    {
        var baseDir = new Option<string?>("--base") { Description = "A base checkpoint or pretrain run directory (default: random k2-nano weights)" };
        var config = new Option<string>("--config") { Description = "Model config for random weights", DefaultValueFactory = _ => "configs/models/k2-nano.json" };
        var iterations = new Option<int>("--iterations") { Description = "Iterations measured (after one warm-up iteration)", DefaultValueFactory = _ => 3 };
        var prompts = new Option<int>("--prompts") { Description = "Prompts per iteration", DefaultValueFactory = _ => 16 };
        var samples = new Option<int>("--samples") { Description = "Responses per prompt (K)", DefaultValueFactory = _ => 8 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Response budget per episode", DefaultValueFactory = _ => 128 };
        var weights = WeightsOption.Create();
        var workers = new Option<int>("--workers") { Description = "Also run with 1..N rollout-worker processes on a redis-server the bench starts", DefaultValueFactory = _ => 0 };
        var latencyItems = new Option<int>("--latency-items") { Description = "Round trips measuring the queue's added latency (with --workers)", DefaultValueFactory = _ => 500 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var command = new Command("rl", "RL iteration throughput and its timing breakdown (generate, score, train, push, other)")
        {
            baseDir, config, iterations, prompts, samples, maxTokens, weights, workers, latencyItems, json,
        };
        command.SetAction(parse => Run(context, parse.GetValue(baseDir), parse.GetValue(config)!, parse.GetValue(iterations), parse.GetValue(prompts),
            parse.GetValue(samples), parse.GetValue(maxTokens), parse.GetValue(weights)!, parse.GetValue(json), parse.GetValue(workers), parse.GetValue(latencyItems)));
        yield return command;
    }

    internal static int Run(CliContext context, string? baseDir, string config, int iterations, int prompts, int samples, int maxTokens,
        string weights, bool json, int workers = 0, int latencyItems = 500)
    {
        if (iterations < 1 || prompts < 1 || samples < 2 || maxTokens < 1 || workers < 0 || latencyItems < 20)
        {
            throw new K2RL.Common.ConfigException("--iterations, --prompts and --max-tokens must be >= 1, --samples >= 2, --workers >= 0 and --latency-items >= 20");
        }

        string dir = Path.Combine(Path.GetTempPath(), "k2rl-bench-rl-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(dir);
        try
        {
            if (baseDir is null)
            {
                var modelConfig = ModelConfig.Load(config);
                var model = new K2Model(modelConfig);
                model.InitializeWeights(1);
                baseDir = Path.Combine(dir, "base");
                ModelCheckpoint.Save(baseDir, modelConfig, model.Parameters, BpeTokenizer.ByteLevel());
            }

            string job = Path.Combine(dir, "job.yaml");
            File.WriteAllText(job, string.Create(CultureInfo.InvariantCulture, $"""
                init_from: {baseDir}
                iterations: {iterations + 1}
                prompts_per_iteration: {prompts}
                samples_per_prompt: {samples}
                envs:
                  arithmetic: {"{"}difficulty: [1, 2], max_response_tokens: {maxTokens}{"}"}
                  countdown: {"{"}difficulty: [1, 2], max_response_tokens: {maxTokens}{"}"}
                  list_ops: {"{"}difficulty: [1, 2], max_response_tokens: {maxTokens}{"}"}
                ptx:
                  data:
                    synthetic: [arithmetic, countdown, list_ops]
                rollout:
                  weights: {weights}
                eval:
                  every: 0
                checkpoint:
                  every_iterations: 1000000
                """));
            var registry = GymRegistry.CreateDefault();
            var rlConfig = RlJobConfig.Load(job, registry.Environments.Select(e => e.Name).ToArray(), SyntheticCorpus.CreateDefault().Kinds);
            var measured = Measure(context, rlConfig, registry, Path.Combine(dir, "run"));
            double total = measured.Sum(m => m.IterationS);
            double Share(Func<RlMetrics, double> f) => total > 0 ? measured.Sum(f) / total : 0;
            var result = new JsonObject
            {
                ["iterations"] = measured.Count,
                ["iteration_s"] = Math.Round(total / measured.Count, 3),
                ["samples_per_s"] = Math.Round(measured.Sum(m => m.Responses) / total, 2),
                ["generated_tokens_per_s"] = Math.Round(measured.Sum(m => m.TokensGenerated) / total, 1),
                ["generate_share"] = Math.Round(Share(m => m.GenerateS), 4),
                ["score_share"] = Math.Round(Share(m => m.ScoreS), 4),
                ["train_share"] = Math.Round(Share(m => m.TrainS), 4),
                ["push_share"] = Math.Round(Share(m => m.PushS), 4),
                ["other_share"] = Math.Round(Share(m => m.OtherS), 4),
                ["overhead_share"] = Math.Round(Share(m => m.PushS + m.OtherS), 4),
                ["push_s"] = Math.Round(measured.Average(m => m.PushS), 4),
                ["generate_s"] = Math.Round(measured.Average(m => m.GenerateS), 3),
                ["train_s"] = Math.Round(measured.Average(m => m.TrainS), 3),
                ["train_s_median"] = Math.Round(Quantiles.Median(measured.Select(m => m.TrainS)), 3),
                ["weights"] = weights,
                ["prompts"] = prompts,
                ["samples"] = samples,
                ["max_tokens"] = maxTokens,
                ["load_average"] = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "",
            };
            if (workers > 0)
            {
                AddScaleOut(context, result, rlConfig, registry, dir, workers, latencyItems);
            }

            if (json)
            {
                context.Out.WriteLine(result.ToJsonString());
            }
            else
            {
                foreach (var (k, v) in result)
                {
                    context.Out.WriteLine($"{k,-24} {v}");
                }
            }

            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Runs the job; the metrics of its iterations after the first (which warms up: allocations, JIT, worker engines).</summary>
    private static List<RlMetrics> Measure(CliContext context, RlJobConfig rlConfig, GymRegistry registry, string runDir)
    {
        var observer = new Collect(context.Error);
        using (var rl = new RlJob(rlConfig, runDir, registry))
        {
            rl.TrainAsync(resume: false, maxIterations: null, CancellationToken.None, observer).GetAwaiter().GetResult();
        }

        return observer.Metrics.Skip(1).ToList();
    }

    /// <summary>The same job with 1..<paramref name="workers"/> rollout-worker processes on a redis-server started here, and the queue's latency.</summary>
    private static void AddScaleOut(CliContext context, JsonObject result, RlJobConfig rlConfig, GymRegistry registry, string dir, int workers, int latencyItems)
    {
        using var redis = new RedisServerProcess(RedisServerProcess.FindBinary(), Path.Combine(dir, "redis"), appendFsync: "everysec");
        string shm = "k2rl-bench-" + Guid.NewGuid().ToString("N")[..8];
        var runs = new JsonArray();
        double embedded = (double)result["samples_per_s"]!;
        try
        {
            for (int n = 1; n <= workers; n++)
            {
                context.Error.WriteLine($"bench rl: {n} rollout worker(s) on {redis.Url}");
                using var processes = WorkerProcesses.StartAsync(n, redis.Url, "shm", CancellationToken.None).GetAwaiter().GetResult();
                var measured = Measure(context, rlConfig with { Workers = redis.Url, WeightTransport = "shm", ShmName = shm }, registry, Path.Combine(dir, $"run-{n}"));
                double total = measured.Sum(m => m.IterationS);
                double samplesPerS = measured.Sum(m => m.Responses) / total;
                runs.Add(new JsonObject
                {
                    ["workers"] = n,
                    ["iteration_s"] = Math.Round(total / measured.Count, 3),
                    ["generate_s"] = Math.Round(measured.Average(m => m.GenerateS), 3),
                    ["train_s"] = Math.Round(measured.Average(m => m.TrainS), 3),
                    ["train_s_median"] = Math.Round(Quantiles.Median(measured.Select(m => m.TrainS)), 3),
                    ["samples_per_s"] = Math.Round(samplesPerS, 2),
                    ["generated_tokens_per_s"] = Math.Round(measured.Sum(m => m.TokensGenerated) / total, 1),
                    ["speedup_vs_embedded"] = Math.Round(samplesPerS / embedded, 3),
                });
            }
        }
        finally
        {
            K2RL.CheckpointEngine.SharedMemoryWeightPublisher.Delete(shm);
        }

        result["scale_out"] = runs;
        result["queue_latency_ms"] = Latency(redis.Url, latencyItems, "everysec");
        using (var strict = new RedisServerProcess(RedisServerProcess.FindBinary(), Path.Combine(dir, "redis-always"), appendFsync: "always"))
        {
            result["queue_latency_ms_fsync_always"] = Latency(strict.Url, latencyItems, "always");
        }

        result["cores"] = Environment.ProcessorCount;
    }

    private static JsonObject Latency(string url, int items, string appendFsync)
    {
        var latency = QueueLatencyBenchmark.RunAsync(url, items).GetAwaiter().GetResult();
        return new JsonObject
        {
            ["items"] = latency.Items,
            ["median"] = latency.MedianMs,
            ["p90"] = latency.P90Ms,
            ["max"] = Math.Round(latency.MaxMs, 3),
            ["appendfsync"] = appendFsync,
        };
    }

    private sealed class Collect(TextWriter err) : IRlObserver
    {
        public List<RlMetrics> Metrics { get; } = [];

        public void OnStart(long firstIteration, long totalIterations)
        {
        }

        public void OnIteration(RlMetrics m, long totalIterations)
        {
            Metrics.Add(m);
            err.WriteLine($"iteration {m.Iteration}/{totalIterations}: {m.IterationS:F2} s (generate {m.GenerateS:F2}, score {m.ScoreS:F2}, train {m.TrainS:F2}, push {m.PushS:F3}, other {m.OtherS:F3})");
        }
    }
}
