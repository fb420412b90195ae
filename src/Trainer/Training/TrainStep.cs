using System.Diagnostics;
using System.Numerics.Tensors;
using K2RL.Trainer.Optim;
using K2RL.Trainer.Pretraining;

namespace K2RL.Trainer.Training;

/// <summary>
/// Per-token loss weights of one micro-batch, chosen after its forward: reads the per-token log-probabilities
/// (−CE_t, [B·T], 0 where masked) and the targets, writes dLoss/dCE_t into <paramref name="weights"/> ([B·T],
/// cleared beforehand; may be negative; ignored where the target is masked) and returns this micro-batch's
/// contribution to the reported loss.
/// </summary>
public delegate double TokenWeighting(ReadOnlySpan<float> tokenLogProbs, ReadOnlySpan<int> targets, Span<float> weights);

/// <summary>
/// One micro-batch of a <see cref="TrainStep"/>: inputs and next-token targets, [B·T] each, row-major by sequence
/// (targets &lt; 0 are masked: no loss, no gradient).
/// </summary>
public sealed class MicroBatch
{
    public MicroBatch(int[] inputs, int[] targets, int b, int t)
    {
        if (b <= 0 || t <= 0 || inputs.Length != b * t || targets.Length != b * t)
        {
            throw new ArgumentException($"a micro-batch of B={b}, T={t} needs B*T inputs and targets (positive B, T), got {inputs.Length} and {targets.Length}");
        }

        (Inputs, Targets, B, T) = (inputs, targets, b, t);
    }

    public int[] Inputs { get; }

    public int[] Targets { get; }

    public int B { get; }

    public int T { get; }

    /// <summary>
    /// null: the cross-entropy group, whose loss is <see cref="Scale"/> · the mean CE over the unmasked targets of
    /// all the step's cross-entropy micro-batches (a per-token mean, not a mean of micro-batch means). Non-null:
    /// the weights of this micro-batch's tokens come from the delegate (RL objectives).
    /// </summary>
    public TokenWeighting? Weighting { get; init; }

    /// <summary>
    /// A routing record for routing replay ([B·T, ModelConfig.RoutingStride] expert ids; −1 rows route by the
    /// model's own scores), or null: each token goes to the experts the rollout engine used when it sampled.
    /// </summary>
    public int[]? Routing { get; init; }

    /// <summary>The cross-entropy group's loss scale (e.g. the PTX λ); every CE micro-batch of one step shares it.</summary>
    public float Scale { get; init; } = 1f;

    /// <summary>Targets ≥ 0.</summary>
    public int CountTargets()
    {
        int n = 0;
        foreach (int y in Targets)
        {
            n += y >= 0 ? 1 : 0;
        }

        return n;
    }
}

/// <summary>One step's wall-clock split (seconds): zero grads, forward + backward of every micro-batch, the Muon
/// phase and its Newton–Schulz part, the rest of the optimizer (gradient clip, AdamW, bias rule), QK-Clip.</summary>
public sealed record TrainStepTimes(double Zero, double ForwardBackward, double NewtonSchulz, double Muon, double Other, double QkClip)
{
    public static readonly TrainStepTimes None = new(0, 0, 0, 0, 0, 0);

    public double Optimizer => Muon + Other + QkClip;

    public double Step => Zero + ForwardBackward + Optimizer;

    public static TrainStepTimes operator +(TrainStepTimes a, TrainStepTimes b) => new(a.Zero + b.Zero, a.ForwardBackward + b.ForwardBackward,
        a.NewtonSchulz + b.NewtonSchulz, a.Muon + b.Muon, a.Other + b.Other, a.QkClip + b.QkClip);

    public TrainStepTimes Over(int n) => new(Zero / n, ForwardBackward / n, NewtonSchulz / n, Muon / n, Other / n, QkClip / n);
}

/// <summary>
/// What one step did. GradNorm is before clipping; MaxLogit the max over layers and heads before QK-Clip;
/// ExpertLoadMaxOverMean the worst MoE layer; Tokens the unmasked targets; Skipped: a non-finite loss or gradient
/// norm, so nothing was updated.
/// </summary>
public sealed record TrainStepResult(double Loss, double GradNorm, bool Skipped, float MaxLogit, int ClippedHeads,
    double ExpertLoadMaxOverMean, float BalanceLoss, long Tokens, TrainStepTimes Times);

/// <summary>
/// One optimizer step, the one home of it for pretraining, <c>bench train</c>, RL and SFT:
/// zero grads; for each micro-batch forward, per-token weights (CE group: Scale / N_ce over all the step's CE
/// targets; weighted micro-batches: their delegate), backward (gradients accumulate); global-norm clip; the
/// optimizer (Muon / MuonClip / AdamW by <see cref="OptimizerSettings.Kind"/>); QK-Clip on the max logit per head
/// over all micro-batches; the bias rule on the expert loads summed over them. A non-finite loss or gradient norm
/// skips the update. The gradient is that of one batch holding all the rows (fp32 rounding aside).
/// The model's sequence-balance weight α is shared the same way: micro-batch k runs with α·B_k/ΣB, so its
/// gradient and the reported balance loss are those of the one big batch.
/// </summary>
public sealed class TrainStep
{
    private readonly ITrainableModel model;
    private readonly float biasGamma;
    private float[] maxLogits = [];     // [L·H]
    private float[] expertLoad = [];    // [L·E]
    private float[] weights = [];       // [B·T] of the current micro-batch
    private float[] logProbs = [];      // [B·T] of the current micro-batch

    public TrainStep(ITrainableModel model, OptimizerSettings settings, float biasGamma, int threads = 0)
    {
        this.model = model;
        this.biasGamma = biasGamma;
        Optimizer = new Optimizer(model.Layout, settings, threads);
    }

    /// <summary>The optimizer and its state (checkpoint save / load).</summary>
    public Optimizer Optimizer { get; }

    /// <summary>[L·H] max pre-softmax logit per layer and head over the last step's micro-batches.</summary>
    public ReadOnlySpan<float> MaxLogits => maxLogits;

    /// <summary>[L·E] tokens routed to each expert per layer, summed over the last step's micro-batches.</summary>
    public ReadOnlySpan<float> ExpertLoad => expertLoad;

    /// <summary>Runs one step over <paramref name="batches"/> with learning rate <paramref name="lr"/>.</summary>
    public TrainStepResult Run(IReadOnlyList<MicroBatch> batches, float lr)
    {
        var (ceTargets, ceScale, rows, tokens) = Plan(batches);
        long t0 = Stopwatch.GetTimestamp();
        model.ZeroGradients();
        long t1 = Stopwatch.GetTimestamp();
        var (loss, balance) = ForwardBackward(batches, ceTargets, ceScale, rows);
        long t2 = Stopwatch.GetTimestamp();
        double zero = Stopwatch.GetElapsedTime(t0, t1).TotalSeconds, fb = Stopwatch.GetElapsedTime(t1, t2).TotalSeconds;

        var s = Optimizer.Settings;
        double gradNorm = OptimMath.ClipGlobalNorm(model.Gradients, s.GradClip);
        float maxLogit = Max(maxLogits);
        double imbalance = LoadImbalance();
        if (!double.IsFinite(loss) || !double.IsFinite(gradNorm))
        {
            var skipped = new TrainStepTimes(zero, fb, 0, 0, Stopwatch.GetElapsedTime(t2).TotalSeconds, 0);
            return new TrainStepResult(loss, gradNorm, true, maxLogit, 0, imbalance, balance, tokens, skipped);
        }

        Optimizer.Apply(model.Parameters, model.Gradients, lr);
        long t3 = Stopwatch.GetTimestamp();
        int clipped = s.UsesQkClip ? QkClip.Apply(model.Parameters, model.Layout, maxLogits, s.QkClipTau).Count : 0;
        long t4 = Stopwatch.GetTimestamp();
        ExpertBalance.UpdateBiases(model.Parameters, model.Layout, model.Layout.Config, expertLoad, biasGamma);
        var timings = Optimizer.LastTimings;
        double muon = timings.MuonMs / 1000;
        double other = Stopwatch.GetElapsedTime(t2, t3).TotalSeconds - muon + Stopwatch.GetElapsedTime(t4).TotalSeconds;
        var times = new TrainStepTimes(zero, fb, timings.NewtonSchulzMs / 1000, muon, other, Stopwatch.GetElapsedTime(t3, t4).TotalSeconds);
        return new TrainStepResult(loss, gradNorm, false, maxLogit, clipped, imbalance, balance, tokens, times);
    }

    /// <summary>Checks the batches; counts the CE group's targets, all rows and all unmasked targets.</summary>
    private static (long CeTargets, float CeScale, int Rows, long Tokens) Plan(IReadOnlyList<MicroBatch> batches)
    {
        if (batches.Count == 0)
        {
            throw new ArgumentException("a training step needs at least one micro-batch", nameof(batches));
        }

        long ce = 0, tokens = 0;
        int rows = 0;
        float? scale = null;
        for (int k = 0; k < batches.Count; k++)
        {
            var b = batches[k];
            int n = b.CountTargets();
            tokens += n;
            rows += b.B;
            if (b.Weighting is not null)
            {
                continue;
            }

            if (scale is float s && s != b.Scale)
            {
                throw new ArgumentException($"the cross-entropy micro-batches of one step must share one Scale: micro-batch {k} has {b.Scale}, an earlier one {s}", nameof(batches));
            }

            scale = b.Scale;
            ce += n;
        }

        return (ce, scale ?? 0f, rows, tokens);
    }

    /// <summary>Forward, weights, backward for each micro-batch; gathers max logits and loads. Returns (loss, balance loss).</summary>
    private (double Loss, float Balance) ForwardBackward(IReadOnlyList<MicroBatch> batches, long ceTargets, float ceScale, int rows)
    {
        float alpha = model.SequenceBalanceAlpha;
        float ceWeight = ceTargets == 0 ? 0f : (float)(ceScale / (double)ceTargets);
        double ceSum = 0, weighted = 0, balance = 0;
        try
        {
            for (int k = 0; k < batches.Count; k++)
            {
                var b = batches[k];
                int n = b.B * b.T;
                if (alpha > 0)
                {
                    model.SequenceBalanceAlpha = alpha * ((float)b.B / rows);
                }

                model.Forward(b.Inputs, b.Targets, b.B, b.T, b.Routing);
                balance += model.BalanceLoss;
                Gather(k == 0);
                EnsureLength(ref weights, n);
                var w = weights.AsSpan(0, n);
                var ce = model.TokenLosses[..n];
                if (b.Weighting is null)
                {
                    ceSum += Sum(ce);
                    for (int i = 0; i < n; i++)
                    {
                        w[i] = b.Targets[i] >= 0 ? ceWeight : 0f;
                    }
                }
                else
                {
                    EnsureLength(ref logProbs, n);
                    TensorPrimitives.Negate(ce, logProbs.AsSpan(0, n));
                    w.Clear();
                    weighted += b.Weighting(logProbs.AsSpan(0, n), b.Targets, w);
                }

                model.BackwardWeighted(b.Inputs, b.Targets, w);
            }
        }
        finally
        {
            if (alpha > 0)
            {
                model.SequenceBalanceAlpha = alpha;
            }
        }

        double ceLoss = ceTargets == 0 ? 0 : ceScale * (ceSum / ceTargets);
        return (ceLoss + weighted, (float)balance);
    }

    private void Gather(bool first)
    {
        ReadOnlySpan<float> logits = model.MaxLogits, load = model.ExpertLoad;
        EnsureLength(ref maxLogits, logits.Length, exact: true);
        EnsureLength(ref expertLoad, load.Length, exact: true);
        if (first)
        {
            logits.CopyTo(maxLogits);
            load.CopyTo(expertLoad);
            return;
        }

        TensorPrimitives.Max(maxLogits, logits, maxLogits);
        TensorPrimitives.Add(expertLoad, load, expertLoad);
    }

    /// <summary>max over MoE layers of max_i load_i / mean_i load_i (0 without experts).</summary>
    private double LoadImbalance()
    {
        var cfg = model.Layout.Config;
        int E = cfg.NRoutedExperts;
        double worst = 0;
        for (int l = 0; l < cfg.NumHiddenLayers && E > 0 && expertLoad.Length >= (l + 1) * E; l++)
        {
            if (cfg.IsMoeLayer(l))
            {
                worst = Math.Max(worst, ExpertBalance.MaxOverMean(expertLoad.AsSpan(l * E, E)));
            }
        }

        return worst;
    }

    /// <summary>Masked positions hold 0, so the plain sum is the sum over targets ≥ 0 (in double: K·B·T terms).</summary>
    private static double Sum(ReadOnlySpan<float> xs)
    {
        double s = 0;
        foreach (float x in xs)
        {
            s += x;
        }

        return s;
    }

    private static float Max(ReadOnlySpan<float> xs) => xs.Length == 0 ? 0 : TensorPrimitives.Max(xs);

    private static void EnsureLength(ref float[] buffer, int length, bool exact = false)
    {
        if (exact ? buffer.Length != length : buffer.Length < length)
        {
            buffer = new float[length];
        }
    }
}
