using K2RL.Gym;
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
/// Held-out accuracy of a pretrained base: greedy decoding of the assistant turn for held-out Gym tasks with the
/// rollout engine (<see cref="EnginePolicy"/>, the policy <c>k2rl gym eval</c> uses; a kind's tasks in one batch),
/// scored by each task's verifier, one result per (kind, difficulty) so RL can start where the reward is non-zero. Single-turn synthetic kinds only; <c>k2rl gym eval</c> covers every environment
/// (tool_use's tool loop, code's sandbox) with pass@k.
/// </summary>
public static class HeldOutEval
{
    public static readonly IReadOnlyDictionary<string, IVerifier> Verifiers = new Dictionary<string, IVerifier>
    {
        ["arithmetic"] = new NumericVerifier(),
        ["countdown"] = new CountdownVerifier(),
        ["list_ops"] = new ExactMatchVerifier(),
    };

    public static List<TaskAccuracy> Run(ModelConfig config, float[] parameters, BpeTokenizer tokenizer,
        IEnumerable<string> kinds, int perKind, IReadOnlyList<int> difficulties, int maxNewTokens, long seed, Action<string>? log = null,
        int batch = 16)
    {
        var registry = GymRegistry.CreateDefault();
        var generators = registry.Generators;
        var decoder = new ModelDecoder(config, Math.Max(1, Math.Min(batch, perKind)));
        decoder.LoadWeights(parameters);
        var engine = new RolloutEngine(decoder, new EngineOptions { SampleableVocab = Math.Min(tokenizer.VocabSize, config.VocabSize) });
        var policy = new EnginePolicy(engine, tokenizer, new EnginePolicyOptions { Temperature = 0, MaxTokens = maxNewTokens });
        var results = new List<TaskAccuracy>();
        foreach (string kind in kinds)
        {
            if (!Verifiers.TryGetValue(kind, out var verifier) || !generators.TryGetValue(kind, out var generator))
            {
                throw new K2RL.Common.ConfigException($"held-out evaluation supports {string.Join(", ", Verifiers.Keys)}; not \"{kind}\"");
            }

            foreach (int difficulty in difficulties.Select(d => Math.Clamp(d, 1, generator.MaxDifficulty)).Distinct())
            {
                results.Add(RunOne(policy, generator, verifier, perKind, difficulty, seed, log));
            }
        }

        return results;
    }

    private static TaskAccuracy RunOne(EnginePolicy policy, ITaskGenerator generator, IVerifier verifier, int perKind, int difficulty,
        long seed, Action<string>? log)
    {
        string kind = generator.Kind;
        var tasks = Enumerable.Range(0, perKind)
            .Select(i => generator.Generate(seed + i, Split.HeldOut, difficulty)).ToList();
        long tokensBefore = policy.Stats.Tokens;
        var texts = policy.GenerateAsync(tasks.Select((t, i) => new PolicyRequest(t.PromptMessages(), [], i, 0)).ToList())
            .GetAwaiter().GetResult();
        policy.Clear();
        int correct = 0, answered = 0;
        for (int i = 0; i < perKind; i++)
        {
            string text = texts[i];
            if (AnswerExtractor.TryExtract(text, out _))
            {
                answered++;
            }

            if (verifier.VerifyAsync(new VerifyRequest(text, tasks[i])).AsTask().GetAwaiter().GetResult().Passed)
            {
                correct++;
            }

            if (i == 0)
            {
                log?.Invoke($"{kind} d{difficulty} sample: {tasks[i].Prompt.ReplaceLineEndings(" ")} => {text.ReplaceLineEndings(" ")} (reference {tasks[i].Answer})");
            }
        }

        long tokens = policy.Stats.Tokens - tokensBefore;
        return new TaskAccuracy(kind, difficulty, perKind, correct, answered, perKind == 0 ? 0 : (double)tokens / perKind);
    }
}
