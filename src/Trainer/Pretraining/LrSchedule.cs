namespace K2RL.Trainer.Pretraining;

/// <summary>
/// Learning-rate multiplier as data (job file section `schedule`): linear warmup, then "constant", "cosine"
/// (to min_lr_ratio at the last step) or "wsd" (warmup–stable–decay: flat, then linear to min_lr_ratio over the
/// last decay_fraction of the run).
/// </summary>
public sealed record LrSchedule
{
    public string Kind { get; init; } = "wsd";

    public int WarmupSteps { get; init; } = 20;

    public float DecayFraction { get; init; } = 0.2f;

    public float MinLrRatio { get; init; } = 0.1f;

    /// <summary>The multiplier for the step with 0-based index <paramref name="step"/> of <paramref name="totalSteps"/>.</summary>
    public double Factor(long step, long totalSteps)
    {
        if (step < WarmupSteps)
        {
            return (step + 1.0) / WarmupSteps;
        }

        double min = MinLrRatio;
        switch (Kind)
        {
            case "constant":
                return 1.0;
            case "cosine":
            {
                double span = Math.Max(1, totalSteps - WarmupSteps - 1);
                double p = Math.Clamp((step - WarmupSteps) / span, 0, 1);
                return min + (1 - min) * 0.5 * (1 + Math.Cos(Math.PI * p));
            }

            default: // wsd
            {
                long decay = (long)Math.Round(DecayFraction * totalSteps);
                long start = totalSteps - decay;
                if (decay <= 0 || step < start)
                {
                    return 1.0;
                }

                double p = Math.Clamp((step - start + 1.0) / decay, 0, 1);
                return 1 - (1 - min) * p;
            }
        }
    }
}
