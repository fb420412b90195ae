namespace K2RL.Trainer.Optim;

/// <summary>
/// MoE load balancing (SPEC §1 item 5): the aux-loss-free correction-bias sign rule. The optional
/// sequence-wise balance loss lives with the router in the model (K2Model.SequenceBalanceAlpha).
/// </summary>
public static class ExpertBalance
{
    /// <summary>DeepSeek-V3's bias update speed.</summary>
    public const float DefaultGamma = 0.001f;

    /// <summary>
    /// b_i −= gamma where expert i's load is above the mean load, += gamma where below, unchanged at the mean.
    /// <paramref name="load"/> holds the tokens routed to each expert over the batch.
    /// </summary>
    public static void UpdateBias(Span<float> bias, ReadOnlySpan<float> load, float gamma)
    {
        if (bias.Length != load.Length)
        {
            throw new ArgumentException($"bias has {bias.Length} experts, load {load.Length}");
        }

        double mean = 0;
        foreach (float x in load)
        {
            mean += x;
        }

        mean /= Math.Max(1, load.Length);
        for (int i = 0; i < bias.Length; i++)
        {
            if (load[i] > mean)
            {
                bias[i] -= gamma;
            }
            else if (load[i] < mean)
            {
                bias[i] += gamma;
            }
        }
    }

    /// <summary>
    /// The sign rule on every MoE layer's e_score_correction_bias in <paramref name="parameters"/>, from [L·E]
    /// loads (dense layers skipped). gamma ≤ 0 or no experts: nothing changes.
    /// </summary>
    public static void UpdateBiases(float[] parameters, K2RL.Model.ParameterLayout layout, K2RL.Model.ModelConfig config,
        ReadOnlySpan<float> load, float gamma)
    {
        int L = config.NumHiddenLayers, E = config.NRoutedExperts;
        if (gamma <= 0 || E == 0)
        {
            return;
        }

        for (int l = 0; l < L; l++)
        {
            if (config.IsMoeLayer(l))
            {
                UpdateBias(layout[$"model.layers.{l}.mlp.gate.e_score_correction_bias"].Of(parameters), load.Slice(l * E, E), gamma);
            }
        }
    }

    /// <summary>max_i load_i / mean_i load_i for one layer (1 is perfectly balanced); 0 when nothing was routed.</summary>
    public static double MaxOverMean(ReadOnlySpan<float> load)
    {
        double sum = 0, max = 0;
        foreach (float x in load)
        {
            sum += x;
            max = Math.Max(max, x);
        }

        return sum > 0 ? max / (sum / load.Length) : 0;
    }
}
