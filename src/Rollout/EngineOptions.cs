namespace K2RL.Rollout;

/// <summary>How a <see cref="RolloutEngine"/> schedules: its cache budget, stop-string text, loop detection.</summary>
public sealed record EngineOptions
{
    /// <summary>The most cache blocks the engine holds at once (null: the whole pool). Requests beyond it wait.</summary>
    public int? CacheBlockBudget { get; init; }

    /// <summary>The same budget in bytes of cache (whole blocks of BytesPerToken × BlockTokens); the smaller of the two applies.</summary>
    public long? CacheBudgetBytes { get; init; }

    /// <summary>Token ids to text, for stop strings; requests with stop strings are refused without it.</summary>
    public Func<IReadOnlyList<int>, string>? Detokenize { get; init; }

    /// <summary>
    /// When new weights are taken, prefill the sequences in flight again so their cache (and so every later
    /// token's log-probability) is the new policy's; off: they continue over the cache the old weights wrote.
    /// </summary>
    public bool RecomputeCacheOnNewWeights { get; init; } = true;

    /// <summary>
    /// Sample only ids below this (a model vocabulary padded past its tokenizer's); null: all. Log-probabilities
    /// stay the policy's over the whole vocabulary, as the trainer computes them.
    /// </summary>
    public int? SampleableVocab { get; init; }

    public TokenRepetition Repetition { get; init; } = new();

    /// <summary>Seeds the seeds of requests that bring none (reported in their results).</summary>
    public ulong SeedBase { get; init; } = 0x5EED;
}

/// <summary>What one <see cref="RolloutEngine.RunIteration"/> did.</summary>
public sealed record IterationReport(long TokensGenerated, int Steps, int Paused);
