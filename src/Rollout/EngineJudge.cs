using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Critic;
using K2RL.Model.Tokenization;

namespace K2RL.Rollout;

/// <summary>
/// The policy as its own critic: an <see cref="IJudge"/> that answers the critic protocol's comparison prompts with
/// the rollout engine. Each prompt is one user turn in the chat format followed by the assistant header; all prompts
/// of a batch are generated together, greedily (temperature 0) within a short budget, and the reply is returned as
/// text for <see cref="VerdictParser"/>. A prompt the engine refuses (too long for the context, say) yields null,
/// which the protocol counts as unparseable; only cancellation throws.
/// </summary>
public sealed class EngineJudge : IJudge
{
    private readonly RolloutEngine engine;
    private readonly BpeTokenizer tokenizer;
    private readonly int maxTokens;
    private readonly int[] stops;
    private int failures;

    /// <param name="maxTokens">the verdict budget: the prompt asks for brief thought and one verdict line.</param>
    public EngineJudge(RolloutEngine engine, BpeTokenizer tokenizer, int maxTokens = 64)
    {
        if (maxTokens < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxTokens), maxTokens, "the verdict budget must be >= 1 token");
        }

        this.engine = engine;
        this.tokenizer = tokenizer;
        this.maxTokens = maxTokens;
        stops = EnginePolicy.StopTokens(tokenizer);
    }

    public string Name => "policy";

    /// <summary>Prompts the engine refused (answered with null).</summary>
    public int Failures => Volatile.Read(ref failures);

    /// <summary>The last refusal's reason, for logs.</summary>
    public string? LastError { get; private set; }

    public async Task<IReadOnlyList<string?>> JudgeAsync(IReadOnlyList<string> prompts, CancellationToken ct = default) =>
        (await AnswerAsync(prompts, ct)).Select(a => a.Text).ToList();

    /// <summary>The replies, and for a prompt the engine refused, the engine's reason.</summary>
    public async Task<IReadOnlyList<JudgeAnswer>> AnswerAsync(IReadOnlyList<string> prompts, CancellationToken ct = default)
    {
        if (prompts.Count == 0)
        {
            return [];
        }

        var encoded = prompts.Select(p => ChatEncoder.Encode(tokenizer, [Message.UserText(p)], addGenerationPrompt: true)).ToList();
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = maxTokens, StopTokens = stops, StopOnRepetition = true };
        var results = await Task.Run(() => EngineBatch.Run(engine, encoded, _ => sampling, ct), ct);
        var answers = new JudgeAnswer[prompts.Count];
        for (int i = 0; i < prompts.Count; i++)
        {
            var r = results[i];
            if (r.FinishReason == FinishReason.Error)
            {
                Interlocked.Increment(ref failures);
                LastError = r.Error;
                answers[i] = new JudgeAnswer(null, $"the engine refused the prompt: {r.Error}");
                continue;
            }

            var ids = r.TokenIds;
            int n = ids.Length > 0 && stops.Contains(ids[^1]) ? ids.Length - 1 : ids.Length;
            answers[i] = new JudgeAnswer(tokenizer.Decode(ids.AsSpan(0, n)), null);
        }

        return answers;
    }
}
