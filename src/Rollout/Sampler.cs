namespace K2RL.Rollout;

/// <summary>
/// Token sampling over one row of logits [V]: greedy, temperature, top-k, top-p. Pure functions of the
/// logits, the parameters and the request's own random stream. Ties break toward the lower token id.
/// </summary>
public static class Sampler
{
    /// <summary>log softmax(logits)[token] at temperature 1: the policy's log-probability the RL objective uses.</summary>
    public static float LogProb(ReadOnlySpan<float> logits, int token)
    {
        float max = float.NegativeInfinity;
        foreach (float x in logits)
        {
            max = Math.Max(max, x);
        }

        double sum = 0;
        foreach (float x in logits)
        {
            sum += Math.Exp(x - max);
        }

        return (float)(logits[token] - max - Math.Log(sum));
    }

    public static int Argmax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
        {
            if (logits[i] > logits[best])
            {
                best = i;
            }
        }

        return best;
    }

    /// <summary>
    /// Draws one token. <paramref name="scratch"/> needs room for V ints; <paramref name="probs"/> for V doubles.
    /// Greedy (temperature 0) draws nothing from the stream; every other case draws exactly one number.
    /// </summary>
    public static int Sample(ReadOnlySpan<float> logits, SamplingParams p, ref SamplerRng rng, Span<int> scratch, Span<double> probs)
    {
        if (p.Temperature == 0f)
        {
            return Argmax(logits);
        }

        int V = logits.Length;
        double invT = 1.0 / p.Temperature;
        bool filtered = (p.TopK > 0 && p.TopK < V) || p.TopP < 1f;
        if (!filtered)
        {
            // Plain temperature sampling, in token order.
            double max = double.NegativeInfinity;
            foreach (float x in logits)
            {
                max = Math.Max(max, x * invT);
            }

            double total = 0;
            for (int i = 0; i < V; i++)
            {
                probs[i] = Math.Exp(logits[i] * invT - max);
                total += probs[i];
            }

            return Draw(probs[..V], scratch, V, identity: true, total, ref rng);
        }

        // Candidates sorted by logit descending, then id ascending.
        var order = scratch[..V];
        for (int i = 0; i < V; i++)
        {
            order[i] = i;
        }

        var logitsCopy = logits.ToArray();
        order.Sort((a, b) =>
        {
            int c = logitsCopy[b].CompareTo(logitsCopy[a]);
            return c != 0 ? c : a.CompareTo(b);
        });

        int n = p.TopK > 0 ? Math.Min(p.TopK, V) : V;
        double top = logits[order[0]] * invT;
        double sum = 0;
        for (int r = 0; r < n; r++)
        {
            probs[r] = Math.Exp(logits[order[r]] * invT - top);
            sum += probs[r];
        }

        if (p.TopP < 1f)
        {
            // Smallest prefix whose mass reaches top_p (at least one token).
            double target = p.TopP * sum, cum = 0;
            int keep = 0;
            while (keep < n)
            {
                cum += probs[keep];
                keep++;
                if (cum >= target)
                {
                    break;
                }
            }

            n = keep;
            sum = cum;
        }

        return Draw(probs[..n], order, n, identity: false, sum, ref rng);
    }

    private static int Draw(ReadOnlySpan<double> weights, ReadOnlySpan<int> ids, int n, bool identity, double total, ref SamplerRng rng)
    {
        double u = rng.NextDouble() * total;
        double cum = 0;
        int last = 0;
        for (int r = 0; r < n; r++)
        {
            if (weights[r] <= 0)
            {
                continue;
            }

            last = r;
            cum += weights[r];
            if (u < cum)
            {
                return identity ? r : ids[r];
            }
        }

        // Rounding left u at the very top: the last candidate with mass.
        return identity ? last : ids[last];
    }
}
