using K2RL.Gym;
using K2RL.Model;
using K2RL.Model.Inference;
using K2RL.Model.Tokenization;

namespace K2RL.Trainer.Pretraining;

/// <summary>Accuracy of a base model on one synthetic task kind's held-out split.</summary>
public sealed record TaskAccuracy(string Kind, int Tasks, int Correct, int WithAnswerLine, double MeanResponseTokens)
{
    public double Accuracy => Tasks == 0 ? 0 : (double)Correct / Tasks;
}

/// <summary>
/// Held-out accuracy of a pretrained base: greedy decoding (compressed-cache decode path) of the assistant turn for
/// held-out Gym tasks, scored by each task's verifier. Single-turn kinds only: tool_use needs the tool loop and code
/// needs the sandbox, which the RL rollout side owns.
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
        IEnumerable<string> kinds, int perKind, int difficulty, int maxNewTokens, long seed, Action<string>? log = null)
    {
        var registry = GymRegistry.CreateDefault();
        var generators = registry.Generators;
        int blockTokens = 16;
        int maxLen = config.MaxPositionEmbeddings;
        var pool = new KvBlockPool(config, blockTokens, maxLen / blockTokens + 2);
        var model = new DecodeModel(config, pool, maxBatch: 1);
        model.LoadWeights(parameters);
        int end = tokenizer.SpecialTokenId(SpecialTokens.ImEnd);
        int eot = tokenizer.SpecialTokenId(SpecialTokens.EndOfText);
        var logits = new float[config.VocabSize];
        var results = new List<TaskAccuracy>();
        foreach (string kind in kinds)
        {
            if (!Verifiers.TryGetValue(kind, out var verifier) || !generators.TryGetValue(kind, out var generator))
            {
                throw new K2RL.Common.ConfigException($"held-out evaluation supports {string.Join(", ", Verifiers.Keys)}; not \"{kind}\"");
            }

            int correct = 0, answered = 0;
            long tokens = 0;
            for (int i = 0; i < perKind; i++)
            {
                var task = generator.Generate(seed + i, Split.HeldOut, Math.Min(difficulty, generator.MaxDifficulty));
                string prompt = Gym.ChatFormat.Render(task.PromptMessages()) + Gym.ChatFormat.Assistant + "assistant" + Gym.ChatFormat.Middle;
                var ids = tokenizer.Encode(prompt, allowSpecial: true);
                var seq = new SequenceCache();
                int budget = Math.Min(maxNewTokens, maxLen - ids.Length);
                if (budget <= 0)
                {
                    continue;
                }

                while (seq.Capacity(pool) < ids.Length + budget && pool.TryAllocate(out int block))
                {
                    seq.Blocks.Add(block);
                }

                model.Prefill(seq, ids, logits);
                var response = new List<int>();
                for (int t = 0; t < budget; t++)
                {
                    int next = ArgMax(logits);
                    if (next == end || next == eot)
                    {
                        break;
                    }

                    response.Add(next);
                    if (t + 1 < budget)
                    {
                        model.DecodeStep([seq], [next], logits);
                    }
                }

                foreach (int b in seq.Blocks)
                {
                    pool.Free(b);
                }

                string text = tokenizer.Decode(response.ToArray());
                tokens += response.Count;
                if (AnswerExtractor.TryExtract(text, out _))
                {
                    answered++;
                }

                if (verifier.VerifyAsync(new VerifyRequest(text, task)).AsTask().GetAwaiter().GetResult().Passed)
                {
                    correct++;
                }

                if (i == 0)
                {
                    log?.Invoke($"{kind} sample: {task.Prompt.ReplaceLineEndings(" ")} => {text.ReplaceLineEndings(" ")} (reference {task.Answer})");
                }
            }

            results.Add(new TaskAccuracy(kind, perKind, correct, answered, perKind == 0 ? 0 : (double)tokens / perKind));
        }

        return results;
    }

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++)
        {
            if (x[i] > x[best])
            {
                best = i;
            }
        }

        return best;
    }
}
