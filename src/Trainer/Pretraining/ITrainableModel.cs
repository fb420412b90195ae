using K2RL.Model;

namespace K2RL.Trainer.Pretraining;

/// <summary>
/// What the pretraining loop needs from a model (K2Model provides it through <see cref="K2ModelAdapter"/>).
/// Buffers follow <see cref="Layout"/>; gradients accumulate (+=) until <see cref="ZeroGradients"/>.
/// </summary>
public interface ITrainableModel
{
    ParameterLayout Layout { get; }

    float[] Parameters { get; }

    float[] Gradients { get; }

    void InitializeWeights(ulong seed);

    void ZeroGradients();

    /// <summary>Mean next-token cross-entropy over B·T tokens; adds its gradient into <see cref="Gradients"/>.</summary>
    float ForwardBackward(int[] tokens, int[] targets, int B, int T);

    /// <summary>Mean cross-entropy without gradients.</summary>
    float Forward(int[] tokens, int[] targets, int B, int T);

    /// <summary>[L·H] the max pre-softmax logit per layer and head in the last forward (scale included).</summary>
    ReadOnlySpan<float> MaxLogits { get; }

    /// <summary>[L·E] tokens routed to each expert per layer in the last forward (zero rows for dense layers).</summary>
    ReadOnlySpan<float> ExpertLoad { get; }

    /// <summary>Weight of the sequence-wise balance loss (0 = off); when on, ForwardBackward adds its gradient.</summary>
    float SequenceBalanceAlpha { get; set; }

    /// <summary>The sequence-wise balance loss of the last forward (not included in the returned cross-entropy).</summary>
    float BalanceLoss { get; }
}
