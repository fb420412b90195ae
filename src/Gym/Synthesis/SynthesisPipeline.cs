using System.Diagnostics;
using K2RL.Gym.Eval;

namespace K2RL.Gym.Synthesis;

/// <summary>How far a synthesis run is (reported after each wave of chunks).</summary>
public sealed record SynthProgress(int Done, int Total, int Kept, int Rejected, int Duplicates, TimeSpan Elapsed);

/// <summary>A model that plays trajectories, and how provenance names it (<c>checkpoint:DIR</c>, <c>http:MODEL@URL</c>).</summary>
public sealed record SynthModelSource(IPolicy Policy, string Name);

/// <summary>What a caller may set besides the job: the trajectory sources and the registries.</summary>
public sealed record SynthRunOptions
{
    /// <summary>
    /// The model behind each non-expert generator of the job (<see cref="SynthJob.Generators"/>: the job's and the envs'
    /// own), keyed by its spec; the CLI builds them. An env whose generator is a model missing here is an error.
    /// </summary>
    public IReadOnlyDictionary<SynthGeneratorSpec, SynthModelSource>? ModelSources { get; init; }

    public GymRegistry? Registry { get; init; }

    public AgenticCatalog? Catalog { get; init; }

    public IProgress<SynthProgress>? Progress { get; init; }

    /// <summary>
    /// Counts a record's tokens as SFT will see them (the Gym has no tokenizer: the CLI passes the model's). With it the
    /// summary reports token lengths, and <see cref="SynthJob.MaxTokens"/> rejects longer records as <c>too_long</c>.
    /// </summary>
    public Func<SftRecord, int>? TokenCounter { get; init; }
}

/// <summary>
/// The synthesis pipeline (SPEC §5, <c>k2rl synth</c>): plans the job's trajectories (<see cref="SynthPlan"/>), plays
/// them through their real environments with the source (expert programs by default, or a model), judges each (the
/// environment's verifier, or the rubric judge for agentic tasks; a failed environment, a chat-format violation, an
/// expert transcript the environment does not reproduce, an invalid tool schema, a held-out task or a truncated
/// episode are rejected with their code), deduplicates by content hash, and writes <c>train.jsonl</c> (or shards),
/// <c>rejected.jsonl</c> and <c>summary.json</c> to the output directory.
/// <para>Chunks of episodes run in parallel on all cores (expert) in waves; the results of a wave are written in plan
/// order, so the output is the same whatever the scheduling. Usable without the CLI (the demo calls it).</para>
/// </summary>
public static class SynthesisPipeline
{
    public const string TrainFile = "train.jsonl", RejectedFile = "rejected.jsonl", SummaryFile = "summary.json";

    /// <summary>The environments a job may name with this registry: its own plus <c>agentic</c>.</summary>
    public static IReadOnlyCollection<string> KnownEnvs(GymRegistry registry) =>
        [.. registry.Environments.Select(e => e.Name), AgenticEnvironment.EnvName];

    public static async Task<SynthSummary> RunAsync(SynthJob job, string outDir, SynthRunOptions? options = null, CancellationToken ct = default)
    {
        options ??= new SynthRunOptions();
        if (job.MaxTokens > 0 && options.TokenCounter is null)
        {
            throw new K2RL.Common.ConfigException($"{job.Source}: output.max_tokens ({job.MaxTokens}) needs a tokenizer to count with (k2rl synth --tokenizer DIR)");
        }

        var registry = options.Registry ?? GymRegistry.CreateDefault();
        var catalog = (options.Catalog ?? AgenticCatalog.Default()).Only(job.Categories);
        var plan = SynthPlan.Build(job);
        var sourceOf = Sources(job, plan, options, registry, catalog);
        var sources = sourceOf.Values.Distinct().ToList();
        var summary = new SynthSummary
        {
            Source = sources.Count == 1 ? sources[0].Name : "mixed",
            Workers = sources.Max(x => x.Workers),
        };
        foreach (var env in job.Envs.Where(e => sourceOf.ContainsKey(e.Name)))
        {
            summary.Env(env.Name).Source = sourceOf[env.Name].Name;
        }

        var clock = Stopwatch.StartNew();
        Directory.CreateDirectory(outDir);
        RemoveEarlierOutput(outDir);
        await using var writer = new SynthWriter(outDir, job, summary);
        var seen = new HashSet<string>(StringComparer.Ordinal);

        // Waves over the plan: a source's episodes of the wave, in plan order, in chunks of its size (expert chunks in
        // parallel, a model's one after another), then every outcome written in plan order. With one source this is
        // its waves of 4 chunks per worker exactly.
        int window = sources.Max(x => x.Workers * 4 * x.ChunkSize);
        for (int w = 0; w < plan.Count; w += window)
        {
            var slice = plan.Skip(w).Take(window).ToList();
            var outcomes = new List<(int Index, SynthOutcome Outcome)>(slice.Count);
            foreach (var source in sources)
            {
                var chunks = slice.Where(p => sourceOf[p.Env] == source).Chunk(source.ChunkSize).ToList();
                var results = source.Expert
                    ? await RunParallelAsync(chunks, source.Runner, source.Workers, ct)
                    : await RunSequentialAsync(chunks, source.Runner, ct);
                outcomes.AddRange(chunks.Zip(results).SelectMany(c => c.First.Select(p => p.Index).Zip(c.Second)));
            }

            foreach (var (_, outcome) in outcomes.OrderBy(o => o.Index))
            {
                await writer.WriteAsync(Count(summary, outcome, seen.Add(outcome.Hash)), ct);
            }

            options.Progress?.Report(new SynthProgress(summary.Judged, plan.Count, summary.Kept, summary.Rejected, summary.Duplicates, clock.Elapsed));
        }

        summary.Elapsed = clock.Elapsed;
        await writer.FinishAsync(ct);
        return summary;
    }

    /// <summary>One trajectory source of a run: who plays, how provenance names it, and how its episodes are batched.</summary>
    private sealed record Source(string Name, bool Expert, int Workers, int ChunkSize, SynthEpisodes Runner);

    /// <summary>
    /// Each environment's source, from its generator (its own, else the job's): the expert programs, or that generator's
    /// model from <see cref="SynthRunOptions.ModelSources"/>. Envs sharing a source share one runner (and batches).
    /// </summary>
    private static Dictionary<string, Source> Sources(SynthJob job, IReadOnlyList<EpisodePlan> plan, SynthRunOptions options,
        GymRegistry registry, AgenticCatalog catalog)
    {
        var byPolicy = new Dictionary<IPolicy, Source>(ReferenceEqualityComparer.Instance);
        ExpertPolicy? expert = null;
        var result = new Dictionary<string, Source>(StringComparer.Ordinal);
        foreach (var env in job.Envs.Where(e => e.Weight > 0))
        {
            var spec = job.GeneratorFor(env);
            (IPolicy policy, string name, int batch) = spec.Kind == SynthGeneratorSpec.Expert
                ? (expert ??= new ExpertPolicy(plan, registry, catalog, job.Agentic, job.DetailedEnvs), "expert", 32)
                : options.ModelSources?.GetValueOrDefault(spec) is { } model
                    ? (model.Policy, model.Name, spec.Batch)
                    : throw new K2RL.Common.ConfigException(
                        $"{job.Source}: envs.{env.Name}: its {spec.Kind} generator has no model to play it (k2rl synth builds one for each generator of the job)");
            if (!byPolicy.TryGetValue(policy, out var source))
            {
                bool isExpert = policy is ExpertPolicy;
                int workers = job.Workers > 0 ? job.Workers : isExpert ? Environment.ProcessorCount : 1;
                byPolicy[policy] = source = new Source(name, isExpert, workers, batch,
                    new SynthEpisodes(job, registry, catalog, policy, name, options.TokenCounter));
            }

            result[env.Name] = source;
        }

        return result;
    }

    /// <summary>
    /// Deletes what an earlier run wrote to the directory (train.jsonl, its shards, rejected.jsonl, summary.json), so no
    /// stale file sits beside this run's; nothing else there is touched.
    /// </summary>
    private static void RemoveEarlierOutput(string outDir)
    {
        foreach (string file in Directory.EnumerateFiles(outDir))
        {
            string name = Path.GetFileName(file);
            if (name is TrainFile or RejectedFile or SummaryFile
                || (name.StartsWith("train-", StringComparison.Ordinal) && name.EndsWith(".jsonl", StringComparison.Ordinal)))
            {
                File.Delete(file);
            }
        }
    }

    private static async Task<SynthOutcome[][]> RunParallelAsync(List<EpisodePlan[]> wave, SynthEpisodes runner, int workers, CancellationToken ct)
    {
        var results = new SynthOutcome[wave.Count][];
        await Parallel.ForEachAsync(Enumerable.Range(0, wave.Count), new ParallelOptions { MaxDegreeOfParallelism = workers, CancellationToken = ct },
            async (i, t) => results[i] = await runner.RunAsync(wave[i], t));
        return results;
    }

    private static async Task<SynthOutcome[][]> RunSequentialAsync(List<EpisodePlan[]> wave, SynthEpisodes runner, CancellationToken ct)
    {
        var results = new SynthOutcome[wave.Count][];
        for (int i = 0; i < wave.Count; i++)
        {
            results[i] = await runner.RunAsync(wave[i], ct);
        }

        return results;
    }

    /// <summary>Counts one outcome; a kept record whose content was seen before becomes a duplicate (not written to train).</summary>
    private static SynthOutcome Count(SynthSummary s, SynthOutcome o, bool first)
    {
        var env = s.Env(o.Record.Env!);
        s.Judged++;
        env.Judged++;
        bool multi = o.AssistantTurns >= 2;
        s.MultiTurn += multi ? 1 : 0;
        env.MultiTurn += multi ? 1 : 0;
        foreach (var i in o.Injections)
        {
            s.InjectedFailures[i.Kind] = s.InjectedFailures.GetValueOrDefault(i.Kind) + 1;
        }

        if (!o.Kept)
        {
            s.Rejected++;
            env.Rejected++;
            s.RejectedByReason[o.RejectCode!] = s.RejectedByReason.GetValueOrDefault(o.RejectCode!) + 1;
            return o;
        }

        if (!first)
        {
            s.Duplicates++;
            env.Duplicates++;
            return o with { RejectCode = "duplicate" };
        }

        s.Kept++;
        env.Kept++;
        env.KeptByDifficulty[o.Record.Difficulty ?? 0] = env.KeptByDifficulty.GetValueOrDefault(o.Record.Difficulty ?? 0) + 1;
        env.Chars.Add(K2RL.Common.Chat.ChatFormat.Render(o.Record.Messages, o.Record.Tools).Length);
        if (o.Tokens is int tokens)
        {
            env.Tokens.Add(tokens);
            env.TurnTokens.Add(o.TurnTokens ?? 0);
        }

        if (o.Record.Env == AgenticEnvironment.EnvName)
        {
            s.KeptAgentic++;
            s.KeptWithFailure += o.Injections.Count > 0 ? 1 : 0;
            s.Recoveries += o.Recovered;
            foreach (var i in o.Injections)
            {
                s.InjectedFailuresKept[i.Kind] = s.InjectedFailuresKept.GetValueOrDefault(i.Kind) + 1;
            }
        }

        return o;
    }
}

/// <summary>Writes kept records to train.jsonl (or shards of <see cref="SynthJob.ShardRecords"/>), rejected ones to rejected.jsonl, and the summary last.</summary>
internal sealed class SynthWriter(string outDir, SynthJob job, SynthSummary summary) : IAsyncDisposable
{
    private StreamWriter? train;
    private StreamWriter? rejected;
    private int inShard;

    public async Task WriteAsync(SynthOutcome o, CancellationToken ct)
    {
        if (o.Kept)
        {
            if (train is null || (job.ShardRecords > 0 && inShard == job.ShardRecords))
            {
                await (train?.DisposeAsync() ?? ValueTask.CompletedTask);
                string name = job.ShardRecords > 0 ? $"train-{summary.Files.Count(f => f.StartsWith("train", StringComparison.Ordinal)):D5}.jsonl" : SynthesisPipeline.TrainFile;
                train = Open(name);
                inShard = 0;
            }

            inShard++;
            await train.WriteLineAsync(o.Record.ToJsonLine().AsMemory(), ct);
        }
        else if (job.WriteRejected)
        {
            rejected ??= Open(SynthesisPipeline.RejectedFile);
            var record = o.RejectCode == "duplicate" ? o.Record with { Verdict = new SftVerdict(false, "duplicate", $"same content as an earlier record ({o.Record.Id})") } : o.Record;
            await rejected.WriteLineAsync(record.ToJsonLine().AsMemory(), ct);
        }
    }

    /// <summary>Closes the files (an empty train.jsonl when nothing was kept) and writes summary.json.</summary>
    public async Task FinishAsync(CancellationToken ct)
    {
        train ??= Open(job.ShardRecords > 0 ? "train-00000.jsonl" : SynthesisPipeline.TrainFile);
        await DisposeAsync();
        summary.Files.Add(SynthesisPipeline.SummaryFile);
        await File.WriteAllTextAsync(Path.Combine(outDir, SynthesisPipeline.SummaryFile), summary.ToJson().ToJsonString() + "\n", ct);
    }

    private StreamWriter Open(string name)
    {
        summary.Files.Add(name);
        return new StreamWriter(Path.Combine(outDir, name), append: false, new System.Text.UTF8Encoding(false)) { NewLine = "\n" };
    }

    public async ValueTask DisposeAsync()
    {
        await (train?.DisposeAsync() ?? ValueTask.CompletedTask);
        await (rejected?.DisposeAsync() ?? ValueTask.CompletedTask);
        train = null;
        rejected = null;
    }
}
