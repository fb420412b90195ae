using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Gym;
using K2RL.Gym.Eval;
using K2RL.Model.Inference;
using K2RL.Rollout;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl gym eval ENV --checkpoint DIR [--n 200] [--k K] [--temperature T] [--seed S] [--json]</c>: accuracy and
/// pass@k of a checkpoint on an environment's held-out split. The Gym's <see cref="Evaluator"/> plays the episodes,
/// concurrently and each behind a <see cref="GuardedEnvironment"/> (turn cap, timeouts; a failed environment fails its
/// episode, counted in the report); the policy is the rollout engine (<see cref="EnginePolicy"/>), the turns of every
/// episode waiting for an action in one batch.
/// Result on stdout (one JSON object with --json), progress on stderr.
/// </summary>
public sealed class GymEvalCommand : ICommandProvider
{
    public string Group => "gym";

    internal sealed record Options
    {
        public required string Env { get; init; }

        public required string Checkpoint { get; init; }

        public int N { get; init; } = 200;

        public int K { get; init; } = 1;

        /// <summary>null: greedy for k = 1, 1.0 for k &gt; 1 (pass@k needs distinct samples).</summary>
        public float? Temperature { get; init; }

        public float TopP { get; init; } = 1f;

        public ulong Seed { get; init; }

        public long TaskSeed { get; init; }

        public int Difficulty { get; init; } = 1;

        public int MaxTokens { get; init; } = 256;

        public int Batch { get; init; } = 16;

        /// <summary>Episodes in flight at once; null: 4 × <see cref="Batch"/>.</summary>
        public int? Concurrency { get; init; }

        public int MaxTurns { get; init; } = EpisodeLimits.DefaultMaxTurns;

        public double StepTimeoutSeconds { get; init; } = 60;

        public double EpisodeTimeoutSeconds { get; init; } = 600;

        public string? Config { get; init; }

        /// <summary>A JSONL file for every episode's conversation (<see cref="EvalTranscripts"/>), or null.</summary>
        public string? Transcripts { get; init; }

        public WeightPrecision Weights { get; init; } = WeightPrecision.F32;

        public bool Json { get; init; }
    }

    public IEnumerable<Command> Build(CliContext context)
    {
        var env = new Argument<string>("env") { Description = "Environment name (see 'k2rl gym list')" };
        var decode = new DecodeOptions(256, "Token budget of one assistant turn");
        var n = new Option<int>("--n") { Description = "Held-out tasks", DefaultValueFactory = _ => 200 };
        var k = new Option<int>("--k") { Description = "Samples per task; pass@k for k = 1, 2, 4, ... and K", DefaultValueFactory = _ => 1 };
        var temperature = new Option<float?>("--temperature") { Description = "Sampling temperature (default: 0, greedy, for k = 1; 1.0 for k > 1)" };
        var seed = new Option<ulong>("--seed") { Description = "Sampler seed (each task, sample and turn gets its own stream from it)", DefaultValueFactory = _ => 0 };
        var taskSeed = new Option<long>("--task-seed") { Description = "Seed of the first held-out task (tasks use seeds S..S+n-1)", DefaultValueFactory = _ => 0 };
        var difficulty = new Option<int>("--difficulty") { Description = "Difficulty level (1 = easiest)", DefaultValueFactory = _ => 1 };
        var batch = new Option<int>("--batch") { Description = "Sequences decoded together", DefaultValueFactory = _ => 16 };
        var concurrency = new Option<int?>("--concurrency") { Description = "Episodes in flight at once, their turns batched together (default: 4 x --batch)" };
        var maxTurns = new Option<int>("--max-turns") { Description = "Turns per episode; an episode the environment has not ended by then is truncated", DefaultValueFactory = _ => EpisodeLimits.DefaultMaxTurns };
        var stepTimeout = new Option<double>("--step-timeout") { Description = "Seconds one environment call may take; past it the episode fails", DefaultValueFactory = _ => 60 };
        var episodeTimeout = new Option<double>("--episode-timeout") { Description = "Seconds of environment time per episode (its calls together); past it the episode fails", DefaultValueFactory = _ => 600 };
        var config = new Option<string?>("--config") { Description = "A job config whose 'gym:' section names plugins and remote environments" };
        var transcripts = new Option<string?>("--transcripts") { Description = "Write every episode (messages, verdict) to this JSONL file" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var command = new Command("eval", "Accuracy and pass@k of a checkpoint on an environment's held-out split (rollout engine)")
        {
            env, n, k, temperature, seed, taskSeed, difficulty, batch, concurrency, maxTurns, stepTimeout, episodeTimeout, config, transcripts, json,
        };
        decode.AddTo(command);
        command.SetAction((parse, ct) =>
        {
            var d = decode.Read(parse);
            return Run(context, new Options
            {
                Env = parse.GetValue(env)!,
                Checkpoint = d.Checkpoint,
                N = parse.GetValue(n),
                K = parse.GetValue(k),
                Temperature = parse.GetValue(temperature),
                TopP = d.TopP,
                Seed = parse.GetValue(seed),
                TaskSeed = parse.GetValue(taskSeed),
                Difficulty = parse.GetValue(difficulty),
                MaxTokens = d.MaxTokens,
                Batch = parse.GetValue(batch),
                Concurrency = parse.GetValue(concurrency),
                MaxTurns = parse.GetValue(maxTurns),
                StepTimeoutSeconds = parse.GetValue(stepTimeout),
                EpisodeTimeoutSeconds = parse.GetValue(episodeTimeout),
                Config = parse.GetValue(config),
                Transcripts = parse.GetValue(transcripts),
                Weights = d.Weights,
                Json = parse.GetValue(json),
            }, ct);
        });
        yield return command;
    }

    internal static async Task<int> Run(CliContext context, Options o, CancellationToken ct = default)
    {
        // Every check before the weights are read.
        if (o.N < 1 || o.K < 1 || o.Batch < 1 || o.MaxTokens < 1 || o.Difficulty < 1)
        {
            throw new ConfigException($"--n, --k, --batch, --max-tokens and --difficulty must be >= 1 (got {o.N}, {o.K}, {o.Batch}, {o.MaxTokens}, {o.Difficulty})");
        }

        int concurrency = o.Concurrency ?? 4 * o.Batch;
        if (concurrency < 1 || o.MaxTurns < 1 || !(o.StepTimeoutSeconds > 0) || !(o.EpisodeTimeoutSeconds > 0)
            || o.StepTimeoutSeconds > 86_400 || o.EpisodeTimeoutSeconds > 86_400)
        {
            throw new ConfigException($"--concurrency and --max-turns must be >= 1, --step-timeout and --episode-timeout in (0, 86400] seconds " +
                                      $"(got {concurrency}, {o.MaxTurns}, {o.StepTimeoutSeconds.ToString(CultureInfo.InvariantCulture)}, {o.EpisodeTimeoutSeconds.ToString(CultureInfo.InvariantCulture)})");
        }

        var limits = new EpisodeLimits
        {
            MaxTurns = o.MaxTurns,
            CallTimeout = TimeSpan.FromSeconds(o.StepTimeoutSeconds),
            EpisodeTimeout = TimeSpan.FromSeconds(o.EpisodeTimeoutSeconds),
        };

        if (o.Transcripts is { } path && !Directory.Exists(Path.GetDirectoryName(Path.GetFullPath(path))))
        {
            throw new ConfigException($"--transcripts {path}: its directory does not exist");
        }

        var registry = GymCommands.Registry(o.Config, null);
        if (!registry.Environments.Any(e => e.Name == o.Env))
        {
            throw new ConfigException($"unknown environment '{o.Env}' (registered: {string.Join(", ", registry.Environments.Select(e => e.Name))})");
        }

        float temperature = o.Temperature ?? (o.K > 1 ? 1f : 0f);
        var (_, tokenizer, engine) = CheckpointGeneration.LoadEngine(o.Checkpoint, o.Batch, o.Weights, context.Warn);
        var policy = new EnginePolicy(engine, tokenizer, new EnginePolicyOptions
        {
            Temperature = temperature,
            TopP = o.TopP,
            MaxTokens = o.MaxTokens,
            Seed = o.Seed,
        });
        context.Error.WriteLine($"gym eval {o.Env}: {o.N} held-out tasks x {o.K} samples, temperature {temperature.ToString(CultureInfo.InvariantCulture)}, " +
                                $"up to {o.MaxTokens} tokens a turn and {o.MaxTurns} turns, batch {o.Batch}, {concurrency} episodes at once");
        var report = await Evaluator.RunAsync(o.Env, () => registry.CreateEnvironment(o.Env), new ProgressPolicy(policy, context.Error),
            new EvalOptions { N = o.N, SamplesPerTask = o.K, Difficulty = o.Difficulty, SeedBase = o.TaskSeed, Split = Split.HeldOut, Limits = limits, Concurrency = concurrency }, ct);

        if (o.Transcripts is { } file)
        {
            using var w = new StreamWriter(file);
            EvalTranscripts.Write(report, o.TaskSeed, o.Difficulty, w);
            context.Error.WriteLine($"gym eval {o.Env}: {report.Episodes.Count} episodes written to {file}");
        }

        var stats = policy.Stats;
        int episodes = o.N * o.K;
        var result = JsonNode.Parse(report.ToJson())!.AsObject();
        result["k"] = o.K;
        result["temperature"] = temperature;
        result["truncated_rate"] = episodes == 0 ? 0 : (double)report.Truncated / episodes;
        result["turns"] = stats.Turns;
        result["tokens"] = stats.Tokens;
        result["responses_at_budget"] = stats.Truncated;
        result["refused"] = stats.Errors;
        result["tokens_per_s"] = Math.Round(stats.TokensPerSecond, 1);
        result["checkpoint"] = o.Checkpoint;
        foreach (var (reason, count) in report.Failures)
        {
            context.Error.WriteLine($"{count} episode(s) failed: {reason}");
        }

        if (o.Json)
        {
            context.Out.WriteLine(result.ToJsonString());
            return 0;
        }

        context.Out.WriteLine($"{report.Env}: {report.N} held-out tasks x {report.SamplesPerTask} samples");
        context.Out.WriteLine($"  accuracy   {report.Accuracy:0.####}");
        foreach (var (kk, p) in report.PassAtK)
        {
            context.Out.WriteLine($"  pass@{kk.ToString(CultureInfo.InvariantCulture),-4}  {p:0.####}");
        }

        context.Out.WriteLine($"  mean return {report.MeanReturn:0.####}; truncated episodes {report.Truncated}; failed episodes {report.Failed}; " +
                              $"{stats.Tokens} tokens in {stats.Turns} turns at {stats.TokensPerSecond:0.#} tok/s");
        return 0;
    }

    /// <summary>Reports each batch (one turn of every episode waiting for an action) on stderr.</summary>
    private sealed class ProgressPolicy(EnginePolicy inner, TextWriter log) : IPolicy
    {
        private int batch;

        public async Task<IReadOnlyList<string>> GenerateAsync(IReadOnlyList<PolicyRequest> requests, CancellationToken ct = default)
        {
            var before = inner.Stats;
            var actions = await inner.GenerateAsync(requests, ct);
            var after = inner.Stats;
            batch++;
            long tokens = after.Tokens - before.Tokens;
            double seconds = (after.Elapsed - before.Elapsed).TotalSeconds;
            log.WriteLine($"batch {batch}: {requests.Count} episodes, {tokens} tokens in {seconds:0.0} s " +
                          $"({(seconds > 0 ? tokens / seconds : 0):0.#} tok/s), {after.Truncated - before.Truncated} at the budget, " +
                          $"{after.Errors - before.Errors} refused{(after.Errors > before.Errors ? $" ({inner.LastError})" : "")}");
            return actions;
        }
    }
}
