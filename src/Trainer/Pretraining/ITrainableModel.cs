using K2RL.Model;

namespace K2RL.Trainer.Pretraining;

/// <summary>
/// What a training step (<see cref="K2RL.Trainer.Training.TrainStep"/>) and the held-out evaluation need from a model
/// (K2Model provides it through <see cref="K2ModelAdapter"/>). Buffers follow <see cref="Layout"/>; gradients
/// accumulate (+=) until <see cref="ZeroGradients"/>. A step is <see cref="Forward"/>, then
/// <see cref="BackwardWeighted"/> through that forward's activations.
/// </summary>
public interface ITrainableModel
{
    ParameterLayout Layout { get; }

    float[] Parameters { get; }

    float[] Gradients { get; }

    void InitializeWeights(ulong seed);

    void ZeroGradients();

    /// <summary>
    /// Forward only: the mean cross-entropy over targets ≥ 0 (0 when there are none). <paramref name="routing"/>: a
    /// routing record to replay (see <see cref="K2Model.Forward"/>); a model without routed experts refuses one.
    /// </summary>
    float Forward(int[] tokens, int[] targets, int B, int T, int[]? routing = null);

    /// <summary>Tokens × MoE layers of the last forward whose replayed routing differs from the model's own choice.</summary>
    int ReplayFlips => 0;

    /// <summary>[B·T] per-token cross-entropy −log p(target) of the last forward (0 where the target is &lt; 0).</summary>
    ReadOnlySpan<float> TokenLosses { get; }

    /// <summary>
    /// Backward of Σ_t weights[t] · CE_t (targets ≥ 0) through the last <see cref="Forward"/>, which must have had
    /// the same tokens and targets; adds into <see cref="Gradients"/> (and the balance-loss gradient when it is on).
    /// Returns that weighted loss.
    /// </summary>
    float BackwardWeighted(int[] tokens, int[] targets, ReadOnlySpan<float> weights);

    /// <summary>[L·H] the max pre-softmax logit per layer and head in the last forward (scale included).</summary>
    ReadOnlySpan<float> MaxLogits { get; }

    /// <summary>[L·E] tokens routed to each expert per layer in the last forward (zero rows for dense layers).</summary>
    ReadOnlySpan<float> ExpertLoad { get; }

    /// <summary>Weight of the sequence-wise balance loss (0 = off); when on, BackwardWeighted adds its gradient.</summary>
    float SequenceBalanceAlpha { get; set; }

    /// <summary>The sequence-wise balance loss of the last forward (not included in the returned cross-entropy).</summary>
    float BalanceLoss { get; }
}
