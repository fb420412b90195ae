namespace K2RL.Trainer.Optim;

/// <summary>
/// MoE load balancing (SPEC §1 item 5): the aux-loss-free correction-bias sign rule, and the optional
/// sequence-wise balance loss with its gradient with respect to the router scores.
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

    /// <summary>
    /// Sequence-wise balance loss of one sequence: alpha · Σ_i f_i P_i with f_i = E/(K·T) · #tokens routed to i and
    /// P_i = mean over the T tokens of s_i / Σ_j s_j. <paramref name="scores"/> [T, E] are the sigmoid scores,
    /// <paramref name="chosen"/> [T, K] the selected experts. When <paramref name="dScores"/> is given it receives
    /// (assigned, not accumulated) dLoss/dScores [T, E], treating f as a constant as DeepSeek-V3 does.
    /// </summary>
    public static float SequenceBalanceLoss(ReadOnlySpan<float> scores, ReadOnlySpan<int> chosen, int T, int E, int K,
        float alpha, Span<float> dScores = default)
    {
        var f = new double[E];
        for (int i = 0; i < T * K; i++)
        {
            f[chosen[i]] += 1;
        }

        for (int e = 0; e < E; e++)
        {
            f[e] *= (double)E / ((double)K * T);
        }

        double loss = 0;
        var sums = new double[T];
        for (int t = 0; t < T; t++)
        {
            double sum = 0;
            for (int e = 0; e < E; e++)
            {
                sum += scores[t * E + e];
            }

            sums[t] = sum;
            for (int e = 0; e < E; e++)
            {
                loss += f[e] * scores[t * E + e] / sum / T;
            }
        }

        if (!dScores.IsEmpty)
        {
            // L = alpha/T Σ_t Σ_e f_e s_te / S_t  ⇒  dL/ds_tj = alpha/T (f_j − Σ_e f_e s_te / S_t) / S_t
            for (int t = 0; t < T; t++)
            {
                double dot = 0;
                for (int e = 0; e < E; e++)
                {
                    dot += f[e] * scores[t * E + e];
                }

                dot /= sums[t];
                for (int j = 0; j < E; j++)
                {
                    dScores[t * E + j] = (float)(alpha / T * (f[j] - dot) / sums[t]);
                }
            }
        }

        return (float)(alpha * loss);
    }
}
