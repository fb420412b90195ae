namespace K2RL.Rollout;

/// <summary>
/// An unfinished sequence set aside when an iteration's generation budget ran out: everything needed to
/// continue it later, possibly under newer weights, by re-prefilling prompt + tokens so far.
/// </summary>
public sealed record PartialRollout
{
    public required string Id { get; init; }

    public required IReadOnlyList<int> Prompt { get; init; }

    public required SamplingParams Sampling { get; init; }

    /// <summary>Response tokens so far, each with its log-probability, temperature and weight version.</summary>
    public required IReadOnlyList<SampledToken> Tokens { get; init; }

    /// <summary>The seed the request started from.</summary>
    public required ulong Seed { get; init; }

    /// <summary>The sampler stream's state at the pause: the next draw continues it.</summary>
    public required ulong RngState { get; init; }

    /// <summary>How many times it has been paused.</summary>
    public int Pauses { get; init; }
}
