using System.Globalization;
using K2RL.Common;
using K2RL.Common.Config;

namespace K2RL.Gym.Synthesis;

/// <summary>One environment of the mix (job file section <c>envs.NAME</c>): its share of the trajectories and its difficulties.</summary>
/// <param name="Solutions">expert source: <c>compact</c> or <c>detailed</c> worked solutions for this env; null: the generator's setting.</param>
/// <param name="Generator">this env's own trajectory source (<c>envs.NAME.generator</c>); null: the job's <c>generator</c>.</param>
public sealed record SynthEnvSpec(string Name, double Weight, IReadOnlyList<int> Difficulties, IReadOnlyList<double> DifficultyWeights, string? Solutions = null,
    SynthGeneratorSpec? Generator = null);

/// <summary>
/// Where trajectories come from (job file section <c>generator</c>): <c>expert</c> (deterministic programs, the
/// default), <c>checkpoint</c> (a model through the rollout engine; the CLI builds it) or <c>http</c> (an
/// OpenAI-compatible chat-completions endpoint, the key read from the environment variable <see cref="ApiKeyEnv"/>).
/// </summary>
public sealed record SynthGeneratorSpec
{
    public const string Expert = "expert", Checkpoint = "checkpoint", Http = "http";

    public const string Compact = "compact", Detailed = "detailed";

    public string Kind { get; init; } = Expert;

    /// <summary>
    /// expert: which worked solution a Gym task's expert plays: <c>compact</c> (the one the pretraining corpus holds) or
    /// <c>detailed</c> (<see cref="GymTask.DetailedSolution"/>, every intermediate fact on its line, where the
    /// generator has one; the compact one elsewhere).
    /// </summary>
    public string Solutions { get; init; } = Compact;

    /// <summary>checkpoint: a checkpoint or run directory.</summary>
    public string? Path { get; init; }

    /// <summary>http: the chat-completions URL.</summary>
    public string? Url { get; init; }

    public string Model { get; init; } = "default";

    public string? ApiKeyEnv { get; init; }

    public float Temperature { get; init; }

    public int MaxTokens { get; init; } = 256;

    /// <summary>Episodes run in lockstep, their turns generated in one batch (checkpoint) or concurrently (http).</summary>
    public int Batch { get; init; } = 16;

    public double TimeoutSeconds { get; init; } = 60;

    /// <summary>checkpoint: the precision the engine computes from (<c>f32</c>, <c>bf16</c>); the CLI reads it.</summary>
    public string Weights { get; init; } = "f32";
}

/// <summary>
/// A synthesis job (<c>k2rl synth --job FILE</c>): how many trajectories, from which source, over which environments
/// (the Gym's, plus <c>agentic</c>: the synthetic tools), written how. See docs/SYNTHESIS.md and configs/jobs/synth-nano.yaml.
/// </summary>
public sealed record SynthJob
{
    public long Seed { get; init; } = 1;

    /// <summary>Trajectories to judge (kept or rejected), split over <see cref="Envs"/> by weight.</summary>
    public int Trajectories { get; init; } = 1000;

    /// <summary>Parallel workers; 0: every core for the expert source, 1 for a model.</summary>
    public int Workers { get; init; }

    /// <summary>Turn cap of an episode (<see cref="EpisodeLimits.MaxTurns"/>).</summary>
    public int MaxTurns { get; init; } = 12;

    public SynthGeneratorSpec Generator { get; init; } = new();

    public required IReadOnlyList<SynthEnvSpec> Envs { get; init; }

    public AgenticOptions Agentic { get; init; } = new();

    /// <summary>Tool categories the agentic tasks draw from (all when empty).</summary>
    public IReadOnlyList<string> Categories { get; init; } = [];

    /// <summary>Whether rejected trajectories go to rejected.jsonl with their reasons.</summary>
    public bool WriteRejected { get; init; } = true;

    /// <summary>Kept records per train shard (train-00000.jsonl, ...); 0: one train.jsonl.</summary>
    public int ShardRecords { get; init; }

    /// <summary>Longest kept record in tokens (rejected as <c>too_long</c> beyond); 0: no limit. Needs a token counter.</summary>
    public int MaxTokens { get; init; }

    /// <summary>The file the job came from (for provenance).</summary>
    public string Source { get; init; } = "";

    /// <summary>
    /// The environments whose expert plays detailed solutions: an env's <c>solutions</c>, else its generator's (its own
    /// <c>envs.NAME.generator</c>, else the job's), for envs whose source is the expert programs.
    /// </summary>
    public IReadOnlySet<string> DetailedEnvs => Envs
        .Where(e => GeneratorFor(e).Kind == SynthGeneratorSpec.Expert && (e.Solutions ?? GeneratorFor(e).Solutions) == SynthGeneratorSpec.Detailed)
        .Select(e => e.Name).ToHashSet(StringComparer.Ordinal);

    /// <summary>Where an environment's trajectories come from: its own generator, else the job's.</summary>
    public SynthGeneratorSpec GeneratorFor(SynthEnvSpec env) => env.Generator ?? Generator;

    /// <summary>The distinct trajectory sources (by value) of the envs with a weight, in the envs' order.</summary>
    public IReadOnlyList<SynthGeneratorSpec> Generators => Envs.Where(e => e.Weight > 0).Select(GeneratorFor).Distinct().ToList();

    public static SynthJob Load(string path, IReadOnlyCollection<string> knownEnvs) => Parse(YamlReader.Load(path), knownEnvs);

    public static SynthJob Parse(string yaml, string file, IReadOnlyCollection<string> knownEnvs) => Parse(YamlReader.Parse(yaml, file), knownEnvs);

    /// <summary>Every problem is a <see cref="ConfigException"/> naming <c>file:line:column</c> and the key.</summary>
    private static SynthJob Parse(YamlReader r, IReadOnlyCollection<string> knownEnvs)
    {
        long seed = r.Long("seed", 1);
        int trajectories = r.Int("trajectories", 1000, 1, 100_000_000);
        int workers = r.Int("workers", 0, 0, 1024);
        int maxTurns = r.Int("max_turns", 12, 1, 1000);
        var generator = ParseGenerator(r.Section("generator"));
        var envSection = r.Section("envs");
        var envs = new List<SynthEnvSpec>();
        AgenticOptions agentic = new();
        IReadOnlyList<string> categories = [];
        foreach (var (name, at) in envSection.Keys())
        {
            if (!knownEnvs.Contains(name))
            {
                throw new ConfigException($"{at}: unknown environment \"envs.{name}\" (known: {string.Join(", ", knownEnvs.Order(StringComparer.Ordinal))})");
            }

            var e = envSection.Section(name);
            var own = e.Has("generator") ? ParseGenerator(e.Section("generator")) : null;
            envs.Add(ParseEnv(e, name) with { Generator = own });
            string kind = (own ?? generator).Kind;
            if (envs[^1].Solutions is not null && kind != SynthGeneratorSpec.Expert)
            {
                throw OwnSolutions(e, kind);
            }

            if (name == AgenticEnvironment.EnvName)
            {
                agentic = new AgenticOptions
                {
                    FailureShare = e.Float("failure_share", 0.3f, 0, 1),
                    FailureKinds = e.StrList("failure_kinds", InjectedFailure.Kinds, [.. InjectedFailure.Kinds]),
                };
                categories = e.StrList("categories", [], [.. AgenticCatalog.Default().Categories]);
            }

            e.RejectUnknown();
        }

        if (envs.Count == 0 || envs.All(e => e.Weight == 0))
        {
            throw new ConfigException($"{r.At("envs")}: \"envs\" needs at least one environment with a weight > 0");
        }

        var output = r.Section("output");
        bool rejected = output.Bool("rejected", true);
        int shard = output.Int("shard_records", 0, 0);
        int maxTokens = output.Int("max_tokens", 0, 0);
        output.RejectUnknown();
        r.RejectUnknown();
        return new SynthJob
        {
            Seed = seed, Trajectories = trajectories, Workers = workers, MaxTurns = maxTurns, Generator = generator, Envs = envs,
            Agentic = agentic, Categories = categories, WriteRejected = rejected, ShardRecords = shard, MaxTokens = maxTokens, Source = r.File,
        };
    }

    private static SynthEnvSpec ParseEnv(YamlReader e, string name)
    {
        double weight = e.Float("weight", 1, 0);
        var difficulties = Numbers(e, "difficulty", ["1"]).Select(s => (int)Math.Round(s.Value)).ToList();
        if (difficulties.Any(d => d is < 1 or > 5) || difficulties.Distinct().Count() != difficulties.Count)
        {
            throw new ConfigException($"{e.At("difficulty")}: \"{e.Prefix}difficulty\" must list distinct levels in [1, 5]");
        }

        var weights = Numbers(e, "difficulty_weights", difficulties.Select(_ => "1").ToArray()).Select(s => s.Value).ToList();
        if (weights.Count != difficulties.Count || weights.Any(w => w < 0) || weights.Sum() <= 0)
        {
            throw new ConfigException($"{e.At("difficulty_weights")}: \"{e.Prefix}difficulty_weights\" needs one weight >= 0 per difficulty " +
                                      $"({difficulties.Count}), not all 0");
        }

        string solutions = e.Str("solutions", "", SynthGeneratorSpec.Compact, SynthGeneratorSpec.Detailed);   // "": the generator's
        return new SynthEnvSpec(name, weight, difficulties, weights, solutions.Length == 0 ? null : solutions);
    }

    // `solutions` set where the generator is not the expert programs.
    private static ConfigException OwnSolutions(YamlReader r, string kind) =>
        new($"{r.At("solutions")}: \"{r.Prefix}solutions\" chooses the expert programs' worked solutions; a {kind} generator writes its own");

    private static List<(string Text, double Value)> Numbers(YamlReader e, string key, string[] fallback) =>
        e.StrList(key, fallback).Select(s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v)
            ? (s, v)
            : throw new ConfigException($"{e.At(key)}: \"{e.Prefix}{key}\" entries must be numbers, got \"{s}\"")).ToList();

    private static SynthGeneratorSpec ParseGenerator(YamlReader g)
    {
        string kind = g.Str("kind", SynthGeneratorSpec.Expert, SynthGeneratorSpec.Expert, SynthGeneratorSpec.Checkpoint, SynthGeneratorSpec.Http);
        var spec = new SynthGeneratorSpec
        {
            Kind = kind,
            Path = g.OptionalStr("path"),
            Url = g.OptionalStr("url"),
            Model = g.Str("model", "default"),
            ApiKeyEnv = g.OptionalStr("api_key_env"),
            Temperature = g.Float("temperature", 0, 0, 10),
            MaxTokens = g.Int("max_tokens", 256, 1, 1_000_000),
            Batch = g.Int("batch", 16, 1, 4096),
            TimeoutSeconds = g.Float("timeout_s", 60, 0, 86_400, minExclusive: true),
            Weights = g.Str("weights", "f32"),
            Solutions = g.Str("solutions", SynthGeneratorSpec.Compact, SynthGeneratorSpec.Compact, SynthGeneratorSpec.Detailed),
        };
        g.RejectUnknown();
        if (kind == SynthGeneratorSpec.Checkpoint && spec.Path is null)
        {
            throw g.Missing("path", "the checkpoint or run directory to generate with");
        }

        if (kind != SynthGeneratorSpec.Expert && spec.Solutions != SynthGeneratorSpec.Compact)
        {
            throw OwnSolutions(g, kind);
        }

        if (kind == SynthGeneratorSpec.Http && !Uri.TryCreate(spec.Url, UriKind.Absolute, out _))
        {
            throw spec.Url is null ? g.Missing("url", "the chat-completions endpoint") : new ConfigException($"{g.At("url")}: \"{g.Prefix}url\" is not an absolute URL: {spec.Url}");
        }

        return spec;
    }
}
