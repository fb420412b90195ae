using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using K2RL.Gym;
using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Model.Tokenization;
using K2RL.Trainer.Pretraining;
using K2RL.Trainer.Rl;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl bench rl [--base DIR] [--iterations N] [--json]</c>: RL iterations of the real job (k2-nano, random weights and
/// the byte-level tokenizer unless a base is given) and where their time goes: the shares of generate / score / train /
/// push / other, samples and generated tokens per second. The overhead target: push + other ≤ 10% of an iteration.
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
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var command = new Command("rl", "RL iteration throughput and its timing breakdown (generate, score, train, push, other)")
        {
            baseDir, config, iterations, prompts, samples, maxTokens, weights, json,
        };
        command.SetAction(parse => Run(context, parse.GetValue(baseDir), parse.GetValue(config)!, parse.GetValue(iterations), parse.GetValue(prompts),
            parse.GetValue(samples), parse.GetValue(maxTokens), parse.GetValue(weights)!, parse.GetValue(json)));
        yield return command;
    }

    internal static int Run(CliContext context, string? baseDir, string config, int iterations, int prompts, int samples, int maxTokens,
        string weights, bool json)
    {
        if (iterations < 1 || prompts < 1 || samples < 2 || maxTokens < 1)
        {
            throw new K2RL.Common.ConfigException("--iterations, --prompts and --max-tokens must be >= 1 and --samples >= 2");
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
            var observer = new Collect(context.Error);
            using (var rl = new RlJob(rlConfig, Path.Combine(dir, "run"), registry))
            {
                rl.TrainAsync(resume: false, maxIterations: null, CancellationToken.None, observer).GetAwaiter().GetResult();
            }

            var measured = observer.Metrics.Skip(1).ToList();   // the first iteration warms up (allocations, JIT)
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
                ["weights"] = weights,
                ["prompts"] = prompts,
                ["samples"] = samples,
                ["max_tokens"] = maxTokens,
                ["load_average"] = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "",
            };
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
