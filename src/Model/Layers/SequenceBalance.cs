namespace K2RL.Model.Layers;

/// <summary>
/// DeepSeek-V3's complementary sequence-wise balance loss (SPEC §1 item 5), for one sequence of T tokens:
/// L = alpha · Σ_i f_i P_i with f_i = E/(K·T) · #(tokens of the sequence routed to i) and
/// P_i = (1/T) Σ_t s_ti / Σ_j s_tj over the unbiased sigmoid scores s. f counts discrete choices, so it is a
/// constant for the gradient (as in DeepSeek-V3); a perfectly balanced sequence with uniform scores gives alpha.
/// </summary>
public static class SequenceBalance
{
    /// <summary>
    /// The loss of one sequence. <paramref name="scores"/> [T, E], <paramref name="chosen"/> [T, K] experts;
    /// when <paramref name="dScores"/> is given it receives dL/ds [T, E] (assigned). <paramref name="f"/> is
    /// scratch of E doubles (allocated when empty).
    /// </summary>
    public static float Loss(ReadOnlySpan<float> scores, ReadOnlySpan<int> chosen, int T, int E, int K, float alpha,
        Span<float> dScores = default, Span<double> f = default)
    {
        if (T <= 0 || E <= 0 || K <= 0 || scores.Length < T * E || chosen.Length < T * K
            || (!dScores.IsEmpty && dScores.Length < T * E))
        {
            throw new ArgumentException(
                $"sequence balance: T={T}, E={E}, K={K} need scores [{T * E}], chosen [{T * K}]; got {scores.Length}, {chosen.Length}, dScores {dScores.Length}");
        }

        if (f.Length < E)
        {
            f = new double[E];
        }

        f = f[..E];
        f.Clear();
        for (int i = 0; i < T * K; i++)
        {
            f[chosen[i]] += 1;
        }

        double fScale = (double)E / ((double)K * T);
        for (int e = 0; e < E; e++)
        {
            f[e] *= fScale;
        }

        // L = alpha/T Σ_t (Σ_e f_e s_te) / S_t  ⇒  dL/ds_tj = alpha/T (f_j − Σ_e f_e s_te / S_t) / S_t
        double loss = 0;
        for (int t = 0; t < T; t++)
        {
            var row = scores.Slice(t * E, E);
            double sum = 0, dot = 0;
            for (int e = 0; e < E; e++)
            {
                sum += row[e];
                dot += f[e] * row[e];
            }

            double mean = dot / sum;
            loss += mean;
            if (!dScores.IsEmpty)
            {
                var d = dScores.Slice(t * E, E);
                double c = alpha / (T * sum);
                for (int j = 0; j < E; j++)
                {
                    d[j] = (float)(c * (f[j] - mean));
                }
            }
        }

        return (float)(alpha * loss / T);
    }
}
