using System.CommandLine;
using System.Globalization;
using K2RL.Common;
using K2RL.Gym;
using K2RL.Gym.Eval;
using K2RL.Gym.Synthesis;
using K2RL.Model.Inference;
using K2RL.Model.Tokenization;
using K2RL.Rollout;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl synth --job FILE --out DIR [--count N] [--seed S] [--workers W] [--json]</c>: the synthesis pipeline
/// (<see cref="SynthesisPipeline"/>). The job's <c>generator</c> (or an env's own <c>envs.NAME.generator</c>) picks the
/// trajectory source: the expert programs, a
/// checkpoint through the rollout engine (<see cref="EnginePolicy"/>, built here), or an OpenAI-compatible endpoint
/// (<see cref="OpenAiPolicy"/>). DIR gets train.jsonl, rejected.jsonl and summary.json; with --json the summary is the one
/// stdout object; progress goes to stderr.
/// </summary>
public sealed class SynthCommand : ICommandProvider
{
    public string Group => "";

    internal sealed record Options
    {
        public required string Job { get; init; }

        public required string Out { get; init; }

        public int? Count { get; init; }

        public long? Seed { get; init; }

        public int? Workers { get; init; }

        public string? Tokenizer { get; init; }

        public bool Json { get; init; }
    }

    public IEnumerable<Command> Build(CliContext context)
    {
        var job = new Option<string>("--job") { Description = "The synthesis job file (e.g. configs/jobs/synth-nano.yaml)", Required = true };
        var output = new Option<string>("--out") { Description = "Output directory: train.jsonl, rejected.jsonl, summary.json", Required = true };
        var count = new Option<int?>("--count") { Description = "Trajectories to judge (overrides the job's 'trajectories')" };
        var seed = new Option<long?>("--seed") { Description = "Job seed (overrides the job's 'seed')" };
        var workers = new Option<int?>("--workers") { Description = "Parallel workers (overrides the job's 'workers'; 0: every core for the expert)" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "A tokenizer (or checkpoint) directory: token lengths in the summary, and the job's output.max_tokens filter" };
        var json = new Option<bool>("--json") { Description = "Print the summary as one JSON object on stdout" };
        var command = new Command("synth", "Synthesize judged multi-turn SFT trajectories from the Gym's environments and synthetic tools")
        {
            job, output, count, seed, workers, tokenizer, json,
        };
        command.SetAction((parse, ct) => Run(context, new Options
        {
            Job = parse.GetValue(job)!,
            Out = parse.GetValue(output)!,
            Count = parse.GetValue(count),
            Seed = parse.GetValue(seed),
            Workers = parse.GetValue(workers),
            Tokenizer = parse.GetValue(tokenizer),
            Json = parse.GetValue(json),
        }, ct));
        yield return command;
    }

    internal static async Task<int> Run(CliContext context, Options o, CancellationToken ct = default)
    {
        if (o.Count is < 1 || o.Workers is < 0)
        {
            throw new ConfigException($"--count must be >= 1 and --workers >= 0 (got {o.Count}, {o.Workers})");
        }

        var registry = GymRegistry.CreateDefault();
        var job = SynthJob.Load(o.Job, SynthesisPipeline.KnownEnvs(registry));
        job = job with { Trajectories = o.Count ?? job.Trajectories, Seed = o.Seed ?? job.Seed, Workers = o.Workers ?? job.Workers };
        var models = new Dictionary<SynthGeneratorSpec, SynthModelSource>();
        try
        {
            foreach (var g in job.Generators.Where(g => g.Kind != SynthGeneratorSpec.Expert))
            {
                models[g] = Model(context, job, g);
            }

            string sources = string.Join(", ", job.Envs.Where(e => e.Weight > 0).GroupBy(e => job.GeneratorFor(e))
                .Select(g => $"{string.Join(", ", g.Select(e => e.Name))} from {models.GetValueOrDefault(g.Key)?.Name ?? "expert"}"));
            context.Error.WriteLine($"synth: {job.Trajectories} trajectories over {sources} -> {o.Out}");
            var summary = await SynthesisPipeline.RunAsync(job, o.Out, new SynthRunOptions
            {
                ModelSources = models,
                Registry = registry,
                Progress = new ProgressBar(context.Error),
                TokenCounter = o.Tokenizer is null ? null : Counter(BpeTokenizer.Load(o.Tokenizer)),
            }, ct);
            var result = summary.ToJson();
            result["out"] = Path.GetFullPath(o.Out);
            if (models.Values.Select(m => m.Policy).OfType<OpenAiPolicy>().ToList() is { Count: > 0 } http)
            {
                result["source_failures"] = http.Sum(h => h.Failures);
            }

            context.Out.WriteLine(o.Json ? result.ToJsonString()
                : $"synth: kept {summary.Kept} of {summary.Judged} judged ({summary.Rejected} rejected, {summary.Duplicates} duplicates) " +
                  $"in {summary.Elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s -> {Path.GetFullPath(o.Out)}");
            return 0;
        }
        finally
        {
            foreach (var m in models.Values)
            {
                (m.Policy as IDisposable)?.Dispose();
            }
        }
    }

    /// <summary>The model behind a checkpoint or http generator (the job's, or an env's own).</summary>
    private static SynthModelSource Model(CliContext context, SynthJob job, SynthGeneratorSpec g)
    {
        if (g.Kind == SynthGeneratorSpec.Checkpoint)
        {
            var (_, tokenizer, engine) = CheckpointGeneration.LoadEngine(g.Path!, g.Batch, WeightPrecisions.Parse(g.Weights), context.Warn);
            var policy = new EnginePolicy(engine, tokenizer, new EnginePolicyOptions
            {
                Temperature = g.Temperature,
                MaxTokens = g.MaxTokens,
                Seed = (ulong)job.Seed,
            });
            return new SynthModelSource(policy, $"checkpoint:{g.Path}");
        }

        return new SynthModelSource(OpenAiPolicy.FromSpec(g), $"http:{g.Model}@{g.Url}");
    }

    /// <summary>A record's length in tokens, encoded as the rollout engine and SFT encode chats.</summary>
    private static Func<SftRecord, int> Counter(BpeTokenizer tokenizer) =>
        record => ChatEncoder.Encode(tokenizer, record.Messages, record.Tools).Length;

    /// <summary>A progress line on stderr at most twice a second, and at the end.</summary>
    private sealed class ProgressBar(TextWriter error) : IProgress<SynthProgress>
    {
        private TimeSpan last = TimeSpan.FromSeconds(-1);

        public void Report(SynthProgress p)
        {
            if (p.Done < p.Total && p.Elapsed - last < TimeSpan.FromSeconds(0.5))
            {
                return;
            }

            last = p.Elapsed;
            int filled = p.Total == 0 ? 20 : 20 * p.Done / p.Total;
            error.WriteLine($"[{new string('#', filled)}{new string('.', 20 - filled)}] {p.Done}/{p.Total} judged, {p.Kept} kept, " +
                            $"{p.Rejected} rejected, {p.Duplicates} duplicates, {p.Elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s");
        }
    }
}
