namespace K2RL.Rollout;

/// <summary>
/// Spots a response stuck in a loop while it is generated, on token ids: its tail is one n-gram
/// (n ≤ <see cref="MaxPeriod"/>) repeated back to back, covering at least <see cref="MinSpan"/> tokens and at least
/// <see cref="MinRepeats"/> copies. The rollout engine calls it after each sampled token of a request with
/// <see cref="SamplingParams.StopOnRepetition"/> (finish reason Repetition). Its text twin, the Gym's
/// <c>TextRepetition</c>, judges a finished response's text for the verifiers' degenerate penalty.
/// </summary>
public sealed record TokenRepetition
{
    public int MaxPeriod { get; init; } = 16;

    public int MinRepeats { get; init; } = 4;

    public int MinSpan { get; init; } = 32;

    /// <summary>The repeating n-gram's length, or 0 when the tail is not degenerate.</summary>
    public int Period(IReadOnlyList<SampledToken> tokens)
    {
        int count = tokens.Count;
        for (int p = 1; p <= MaxPeriod; p++)
        {
            int span = Math.Max(p * MinRepeats, MinSpan);
            if (span > count)
            {
                continue;
            }

            bool periodic = true;
            for (int i = count - span + p; i < count; i++)
            {
                if (tokens[i].Token != tokens[i - p].Token)
                {
                    periodic = false;
                    break;
                }
            }

            if (periodic)
            {
                return p;
            }
        }

        return 0;
    }
}
