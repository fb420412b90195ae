namespace K2RL.Gym.Critic.Workbench;

/// <summary>How often two judges gave the same verdict on the same comparisons (same prompt, same order).</summary>
/// <param name="Compared">comparisons both judges answered with a verdict (A, B or tie).</param>
/// <param name="Equal">of those, the ones with the same verdict.</param>
/// <param name="Excluded">comparisons left out because one judge or both had no verdict.</param>
/// <param name="Kappa">Cohen's kappa over A/B/tie; NaN with nothing compared or when chance agreement is 1.</param>
public sealed record JudgeAgreement(int Compared, int Equal, int Excluded, double Kappa)
{
    /// <summary>Share of equal verdicts; NaN with nothing compared.</summary>
    public double Share => Compared == 0 ? double.NaN : Equal / (double)Compared;
}

/// <summary>
/// Position bias of one judge, from pairs it was asked in both orders (i as A then j as A). A pair is consistent when
/// both verdicts name the same winner (or both are ties); a judge without position bias is consistent on every pair.
/// </summary>
/// <param name="Pairs">pairs with a verdict in both orders.</param>
/// <param name="Consistent">of those, the ones whose two verdicts agree.</param>
/// <param name="Decided">comparisons (any order) won by A or B.</param>
/// <param name="FirstWins">of those, the ones won by the response shown first (A); 0.5 of them is no bias.</param>
public sealed record PositionBias(int Pairs, int Consistent, int Decided, int FirstWins)
{
    /// <summary>Share of consistent pairs; NaN with none.</summary>
    public double Agreement => Pairs == 0 ? double.NaN : Consistent / (double)Pairs;

    /// <summary>Share of decided comparisons won by A; NaN with none.</summary>
    public double FirstShare => Decided == 0 ? double.NaN : FirstWins / (double)Decided;
}

/// <summary>Agreement statistics of the rubric workbench.</summary>
public static class Agreement
{
    /// <summary>
    /// Cohen's kappa of paired labels, κ = (p_o − p_e) / (1 − p_e): p_o the share of equal pairs, p_e the chance
    /// agreement Σ_c p₁(c)·p₂(c) from each rater's label shares. NaN with no pairs, or when p_e = 1 (both raters used
    /// one and the same label throughout: agreement is certain by chance, so κ is undefined).
    /// </summary>
    public static double CohensKappa<T>(IReadOnlyList<(T First, T Second)> pairs) where T : notnull
    {
        int n = pairs.Count;
        if (n == 0)
        {
            return double.NaN;
        }

        var first = new Dictionary<T, int>();
        var second = new Dictionary<T, int>();
        int equal = 0;
        foreach (var (a, b) in pairs)
        {
            first[a] = first.GetValueOrDefault(a) + 1;
            second[b] = second.GetValueOrDefault(b) + 1;
            equal += EqualityComparer<T>.Default.Equals(a, b) ? 1 : 0;
        }

        double po = equal / (double)n;
        double pe = first.Sum(kv => kv.Value / (double)n * second.GetValueOrDefault(kv.Key) / n);
        return pe >= 1 ? double.NaN : (po - pe) / (1 - pe);
    }

    /// <summary>Two judges' verdicts on the same comparisons, in the same order; an unparseable verdict leaves its comparison out.</summary>
    public static JudgeAgreement BetweenJudges(IReadOnlyList<PairVerdict> first, IReadOnlyList<PairVerdict> second)
    {
        if (first.Count != second.Count)
        {
            throw new ArgumentException($"the judges answered {first.Count} and {second.Count} comparisons; agreement needs the same ones");
        }

        var pairs = first.Zip(second).Where(p => p.First != PairVerdict.Unparseable && p.Second != PairVerdict.Unparseable).ToList();
        return new JudgeAgreement(pairs.Count, pairs.Count(p => p.First == p.Second), first.Count - pairs.Count, CohensKappa(pairs));
    }

    /// <summary>Position bias from one judge's outcomes (those of several prompts may be concatenated: pairs match within a prompt).</summary>
    public static PositionBias Positions(IEnumerable<IReadOnlyList<PairOutcome>> outcomesByPrompt)
    {
        int pairs = 0, consistent = 0, decided = 0, firstWins = 0;
        foreach (var outcomes in outcomesByPrompt)
        {
            var byOrder = outcomes.ToDictionary(o => (o.Comparison.First, o.Comparison.Second));
            foreach (var o in outcomes)
            {
                if (o.Verdict is PairVerdict.A or PairVerdict.B)
                {
                    decided++;
                    firstWins += o.Verdict == PairVerdict.A ? 1 : 0;
                }

                if (o.Comparison.First < o.Comparison.Second && o.Verdict != PairVerdict.Unparseable
                    && byOrder.TryGetValue((o.Comparison.Second, o.Comparison.First), out var swapped) && swapped.Verdict != PairVerdict.Unparseable)
                {
                    pairs++;
                    consistent += o.Winner == swapped.Winner ? 1 : 0;
                }
            }
        }

        return new PositionBias(pairs, consistent, decided, firstWins);
    }
}
