namespace K2RL.Rollout;

/// <summary>
/// How one request samples. Temperature 0 is greedy; <see cref="TopK"/> 0 and <see cref="TopP"/> 1 turn
/// those filters off. The same seed gives the same tokens whatever else shares the batch.
/// </summary>
public sealed record SamplingParams
{
    public float Temperature { get; init; } = 1f;

    public int TopK { get; init; }

    public float TopP { get; init; } = 1f;

    /// <summary>Seeds this request's own random stream; null: the engine picks one and reports it.</summary>
    public ulong? Seed { get; init; }

    /// <summary>The response budget in tokens; a response that reaches it ends with <c>truncated</c>.</summary>
    public int MaxTokens { get; init; } = 256;

    public IReadOnlyList<int> StopTokens { get; init; } = [];

    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>Whether a response stuck repeating an n-gram is ended early (flagged degenerate).</summary>
    public bool StopOnRepetition { get; init; } = true;

    /// <summary>The first problem with these parameters, or null when they are usable.</summary>
    public string? Problem(int vocabSize)
    {
        if (!float.IsFinite(Temperature) || Temperature < 0)
        {
            return $"temperature must be a finite number >= 0, got {Temperature}";
        }

        if (!(TopP > 0 && TopP <= 1))
        {
            return $"top_p must be in (0, 1], got {TopP}";
        }

        if (TopK < 0)
        {
            return $"top_k must be >= 0 (0 = off), got {TopK}";
        }

        if (MaxTokens < 1)
        {
            return $"max_tokens must be >= 1, got {MaxTokens}";
        }

        foreach (int t in StopTokens)
        {
            if ((uint)t >= (uint)vocabSize)
            {
                return $"stop token {t} is outside the vocabulary [0, {vocabSize})";
            }
        }

        foreach (string s in StopStrings)
        {
            if (string.IsNullOrEmpty(s))
            {
                return "stop strings must not be empty";
            }
        }

        return null;
    }
}

/// <summary>One generation: prompt token ids in, sampled tokens out.</summary>
public sealed record GenerationRequest(string Id, IReadOnlyList<int> Prompt, SamplingParams Sampling);

/// <summary>
/// A generated token with what the RL objective needs: its log-probability under the policy at
/// temperature 1 (pi_old), the temperature it was sampled at, and the weight version that produced it.
/// </summary>
public readonly record struct SampledToken(int Token, float LogProb, float Temperature, long WeightVersion);

/// <summary>Why a sequence ended. Persisted: values never change.</summary>
public enum FinishReason
{
    None = 0,
    StopToken = 1,
    StopString = 2,
    Length = 3,
    ContextFull = 4,
    Degenerate = 5,
    Cancelled = 6,
    Error = 7,
    Paused = 8,
}

/// <summary>The outcome of one request. <see cref="Tokens"/> are all the response tokens, including those generated before a pause.</summary>
public sealed record GenerationResult
{
    public required string Id { get; init; }

    public required IReadOnlyList<int> Prompt { get; init; }

    public required IReadOnlyList<SampledToken> Tokens { get; init; }

    public required FinishReason FinishReason { get; init; }

    /// <summary>The seed the request's random stream started from (the one given, or the engine's pick).</summary>
    public ulong Seed { get; init; }

    /// <summary>Error text when <see cref="FinishReason"/> is <see cref="FinishReason.Error"/>.</summary>
    public string? Error { get; init; }

    /// <summary>
    /// The routing record of the prompt and the tokens ([Prompt.Count + Tokens.Count, ModelConfig.RoutingStride] expert
    /// ids; −1 for positions the engine did not compute, such as the last token), when the decoder keeps one
    /// (<see cref="IDecoder.RoutingOf"/>).
    /// </summary>
    public int[]? Routing { get; init; }

    /// <summary>The response hit its token budget or the context.</summary>
    public bool Truncated => FinishReason is FinishReason.Length or FinishReason.ContextFull;

    /// <summary>Ended early for repeating itself.</summary>
    public bool Degenerate => FinishReason == FinishReason.Degenerate;

    public int[] TokenIds => Tokens.Select(t => t.Token).ToArray();
}
