using System.Runtime.InteropServices;

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
        var (max, logSum) = K2RL.Kernels.ScalarKernels.LogSumExpParts(logits);
        return (float)(logits[token] - max - logSum);
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

        if (p.TopK <= 0 || p.TopK >= V)
        {
            return SampleTopP(logits, p, invT, ref rng, scratch, probs);
        }

        // Candidates by logit descending, then id ascending: only the top k are ordered (a linear selection, then a
        // sort of those k).
        int n = p.TopK;
        var order = scratch[..V];
        var keys = MemoryMarshal.Cast<double, ulong>(probs[..V]);   // probs is free until the masses are written
        for (int i = 0; i < V; i++)
        {
            keys[i] = RankKey(logits[i], i);
        }

        SelectSmallest(keys, n);
        keys[..n].Sort();
        for (int r = 0; r < n; r++)
        {
            order[r] = (int)(uint)keys[r];
        }

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

    /// <summary>
    /// Top-p over the whole vocabulary: the smallest prefix, by logit descending then id ascending, whose mass
    /// reaches top_p of the total (the total summed in token order). Only that prefix is ordered: the best 64
    /// candidates are selected and sorted, then the next 3 × as many, and so on, until the prefix is found.
    /// </summary>
    private static int SampleTopP(ReadOnlySpan<float> logits, SamplingParams p, double invT, ref SamplerRng rng, Span<int> order, Span<double> probs)
    {
        int V = logits.Length;
        var keys = MemoryMarshal.Cast<double, ulong>(probs[..V]);   // probs is free until the masses are written
        int best = 0;
        ulong bestKey = ulong.MaxValue;
        for (int i = 0; i < V; i++)
        {
            keys[i] = RankKey(logits[i], i);
            if (keys[i] < bestKey)
            {
                bestKey = keys[i];
                best = i;
            }
        }

        double top = logits[best] * invT, total = 0;
        for (int i = 0; i < V; i++)
        {
            total += Math.Exp(logits[i] * invT - top);
        }

        double target = p.TopP * total, cum = 0;
        int keep = 0, sorted = 0;
        while (keep < V)
        {
            if (keep == sorted)
            {
                // order the next candidates: the smallest keys of the unsorted rest
                int more = Math.Min(V - sorted, Math.Max(TopPFirstCandidates, 3 * sorted));
                var rest = keys[sorted..];
                SelectSmallest(rest, more);
                rest[..more].Sort();
                sorted += more;
            }

            int id = (int)(uint)keys[keep];
            double mass = Math.Exp(logits[id] * invT - top);
            order[keep] = id;
            probs[keep] = mass;   // overwrites keys[keep]: later selections read only keys[sorted..], past it
            cum += mass;
            keep++;
            if (cum >= target)
            {
                break;
            }
        }

        return Draw(probs[..keep], order, keep, identity: false, cum, ref rng);
    }

    /// <summary>Candidates top-p orders first.</summary>
    private const int TopPFirstCandidates = 64;

    /// <summary>
    /// A key whose ascending order is logit descending, then id ascending, as float.CompareTo orders logits:
    /// −0 and +0 tie, NaN ranks below every number (and NaNs tie).
    /// </summary>
    internal static ulong RankKey(float logit, int id)
    {
        uint ascending;
        if (float.IsNaN(logit))
        {
            ascending = 0;
        }
        else
        {
            uint bits = BitConverter.SingleToUInt32Bits(logit + 0f);   // −0 + 0 = +0
            ascending = (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
        }

        return ((ulong)~ascending << 32) | (uint)id;
    }

    /// <summary>
    /// Moves the n smallest of distinct keys into keys[..n] (in no particular order): quickselect with a
    /// median-of-three pivot, expected linear time.
    /// </summary>
    internal static void SelectSmallest(Span<ulong> keys, int n)
    {
        int lo = 0, hi = keys.Length - 1;
        while (lo < hi)
        {
            int mid = lo + (hi - lo) / 2;
            ulong a = keys[lo], b = keys[mid], c = keys[hi];
            ulong pivot = Math.Max(Math.Min(a, b), Math.Min(Math.Max(a, b), c));
            int i = lo, j = hi;
            while (i <= j)
            {
                while (keys[i] < pivot)
                {
                    i++;
                }

                while (keys[j] > pivot)
                {
                    j--;
                }

                if (i <= j)
                {
                    (keys[i], keys[j]) = (keys[j], keys[i]);
                    i++;
                    j--;
                }
            }

            // [lo, j] ≤ pivot ≤ [i, hi]; the boundary n lies in one side (or between them: done)
            if (n - 1 <= j)
            {
                hi = j;
            }
            else if (n - 1 >= i)
            {
                lo = i;
            }
            else
            {
                return;
            }
        }
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
