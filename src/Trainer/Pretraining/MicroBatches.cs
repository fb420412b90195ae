using System.Numerics.Tensors;

namespace K2RL.Trainer.Pretraining;

/// <summary>
/// Gradient accumulation: one optimizer step's forward + backward over K micro-batches of B×T. The gradient left
/// in the model is the gradient of the mean loss over all K·B·T tokens (the micro-batch gradients summed, then
/// × 1/K; nothing is scaled when K = 1). What QK-Clip and the bias rule read is kept across the micro-batches:
/// the max logit per layer and head (max over the K forwards) and the expert loads (summed).
/// </summary>
public sealed class MicroBatches
{
    private readonly ITrainableModel model;
    private float[] maxLogits = [];     // [L·H]
    private float[] expertLoad = [];    // [L·E]

    public MicroBatches(ITrainableModel model)
    {
        this.model = model;
    }

    /// <summary>[L·H] max pre-softmax logit per layer and head over the last step's micro-batches.</summary>
    public ReadOnlySpan<float> MaxLogits => maxLogits;

    /// <summary>[L·E] tokens routed to each expert per layer, summed over the last step's micro-batches.</summary>
    public ReadOnlySpan<float> ExpertLoad => expertLoad;

    /// <summary>The sequence-wise balance loss, mean over the last step's micro-batches (0 when it is off).</summary>
    public float BalanceLoss { get; private set; }

    /// <summary>
    /// With the model's gradients zeroed by the caller: for k in [0, K) asks <paramref name="fill"/> for micro-batch k (inputs, targets of
    /// B·T each) and runs forward + backward on it. Returns the mean loss over the K·B·T tokens.
    /// </summary>
    public float Run(int K, int[] inputs, int[] targets, int B, int T, Action<int, int[], int[]> fill)
    {
        if (K < 1)
        {
            throw new ArgumentException($"gradient accumulation needs K >= 1 micro-batches, got {K}", nameof(K));
        }

        double lossSum = 0, balanceSum = 0;
        for (int k = 0; k < K; k++)
        {
            fill(k, inputs, targets);
            lossSum += model.ForwardBackward(inputs, targets, B, T);
            balanceSum += model.BalanceLoss;
            Gather(k == 0);
        }

        BalanceLoss = (float)(balanceSum / K);

        if (K > 1)
        {
            TensorPrimitives.Multiply(model.Gradients, 1f / K, model.Gradients);
        }

        return (float)(lossSum / K);
    }

    private void Gather(bool first)
    {
        ReadOnlySpan<float> logits = model.MaxLogits, load = model.ExpertLoad;
        if (maxLogits.Length != logits.Length)
        {
            maxLogits = new float[logits.Length];
        }

        if (expertLoad.Length != load.Length)
        {
            expertLoad = new float[load.Length];
        }

        if (first)
        {
            logits.CopyTo(maxLogits);
            load.CopyTo(expertLoad);
            return;
        }

        TensorPrimitives.Max(maxLogits, logits, maxLogits);
        TensorPrimitives.Add(expertLoad, load, expertLoad);
    }
}
