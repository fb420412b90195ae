using K2RL.Gym;
using K2RL.Gym.Eval;
using K2RL.Model;
using K2RL.Model.Tokenization;
using K2RL.Rollout;

namespace K2RL.Trainer.Pretraining;

/// <summary>Accuracy of a base model on one synthetic task kind's held-out split at one difficulty.</summary>
public sealed record TaskAccuracy(string Kind, int Difficulty, int Tasks, int Correct, int WithAnswerLine, double MeanResponseTokens)
{
    public double Accuracy => Tasks == 0 ? 0 : (double)Correct / Tasks;
}

/// <summary>
/// Held-out accuracy of a pretrained base, `k2rl eval-base`: a thin wrapper over the Gym's evaluation
/// (<see cref="Evaluator"/>, what <c>k2rl gym eval</c> runs) with greedy decoding through the rollout engine
/// (<see cref="EnginePolicy"/>, a kind's tasks in one batch), one report per (kind, difficulty) so RL can start where
/// the reward is non-zero. Single-turn synthetic kinds only (<see cref="Kinds"/>); <c>k2rl gym eval</c> covers every
/// environment (tool_use's tool loop, code's sandbox) with pass@k.
/// </summary>
public static class HeldOutEval
{
    /// <summary>The environments eval-base accepts: the single-turn synthetic kinds the pretraining corpus teaches.</summary>
    public static readonly IReadOnlyList<string> Kinds = ["arithmetic", "countdown", "list_ops"];

    public static List<TaskAccuracy> Run(ModelConfig config, float[] parameters, BpeTokenizer tokenizer,
        IEnumerable<string> kinds, int perKind, IReadOnlyList<int> difficulties, int maxNewTokens, long seed, Action<string>? log = null,
        int batch = 16)
    {
        var registry = GymRegistry.CreateDefault();
        var decoder = new ModelDecoder(config, Math.Max(1, Math.Min(batch, perKind)));
        decoder.LoadWeights(parameters);
        var engine = new RolloutEngine(decoder, new EngineOptions { SampleableVocab = Math.Min(tokenizer.VocabSize, config.VocabSize) });
        var policy = new EnginePolicy(engine, tokenizer, new EnginePolicyOptions { Temperature = 0, MaxTokens = maxNewTokens });
        var results = new List<TaskAccuracy>();
        foreach (string kind in kinds)
        {
            if (!Kinds.Contains(kind) || !registry.Generators.TryGetValue(kind, out var generator))
            {
                throw new K2RL.Common.ConfigException($"held-out evaluation supports {string.Join(", ", Kinds)}; not \"{kind}\"");
            }

            foreach (int difficulty in difficulties.Select(d => Math.Clamp(d, 1, generator.MaxDifficulty)).Distinct())
            {
                results.Add(RunOne(registry, policy, generator, perKind, difficulty, seed, log));
            }
        }

        return results;
    }

    /// <summary>
    /// Greedy held-out accuracy per environment and difficulty, keyed "ENV/dD", as <c>k2rl gym eval</c> measures it
    /// (<see cref="Evaluator"/> over <see cref="EnginePolicy"/> at temperature 0; tasks are seeds 0..tasks−1 of the
    /// held-out split; multi-turn environments run their tool loop). The RL and SFT jobs' in-job evaluation.
    /// </summary>
    public static async Task<SortedDictionary<string, double>> GreedyAccuracyAsync(RolloutEngine engine, BpeTokenizer tokenizer,
        GymRegistry registry, IEnumerable<(string Env, int MaxTokens)> envs, IReadOnlyList<int> difficulties, int tasks, ulong seed,
        CancellationToken ct)
    {
        var results = new SortedDictionary<string, double>(StringComparer.Ordinal);
        foreach (var (env, maxTokens) in envs)
        {
            var policy = new EnginePolicy(engine, tokenizer, new EnginePolicyOptions { Temperature = 0, MaxTokens = maxTokens, Seed = seed });
            foreach (int d in difficulties)
            {
                var report = await Evaluator.RunAsync(env, () => registry.CreateEnvironment(env), policy,
                    new EvalOptions { N = tasks, Difficulty = d, Split = Split.HeldOut, SeedBase = 0 }, ct);
                results[$"{env}/d{d}"] = report.Accuracy;
                policy.Clear();
            }
        }

        return results;
    }

    private static TaskAccuracy RunOne(GymRegistry registry, EnginePolicy policy, ITaskGenerator generator, int perKind, int difficulty,
        long seed, Action<string>? log)
    {
        string kind = generator.Kind;
        long tokensBefore = policy.Stats.Tokens;
        var report = Evaluator.RunAsync(kind, () => registry.CreateEnvironment(kind), policy,
            new EvalOptions { N = perKind, Difficulty = difficulty, SeedBase = seed, Split = Split.HeldOut }).GetAwaiter().GetResult();
        policy.Clear();
        long tokens = policy.Stats.Tokens - tokensBefore;
        var responses = report.Episodes.Select(e => e.Actions.Count > 0 ? e.Actions[^1] : "").ToList();
        if (responses.Count > 0)
        {
            var task = generator.Generate(seed, Split.HeldOut, difficulty);   // the first episode's task, for the log
            log?.Invoke($"{kind} d{difficulty} sample: {task.Prompt.ReplaceLineEndings(" ")} => {responses[0].ReplaceLineEndings(" ")} (reference {task.Answer})");
        }

        return new TaskAccuracy(kind, difficulty, perKind, report.Episodes.Count(e => e.Correct),
            responses.Count(r => AnswerExtractor.TryExtract(r, out _)), perKind == 0 ? 0 : (double)tokens / perKind);
    }
}
