using K2RL.Model;
using K2RL.Trainer.Pretraining;

namespace K2RL.Trainer.Tests;

/// <summary>
/// A stand-in model for loop tests: logits = lm_head · embed[token] (the rest of the layout is carried but has
/// zero gradient). Deterministic, tiny, and able to return a NaN loss on chosen calls.
/// </summary>
internal sealed class BigramModel : ITrainableModel
{
    private readonly float[] maxLogits;
    private readonly float[] load;
    private float[] tokenLosses = [];   // [B·T] of the last forward
    private int lastN;
    private long calls;

    public BigramModel(ModelConfig config)
    {
        Layout = new ParameterLayout(config);
        Parameters = Layout.NewBuffer();
        Gradients = Layout.NewBuffer();
        maxLogits = new float[config.NumHiddenLayers * config.NumAttentionHeads];
        load = new float[config.NumHiddenLayers * config.NRoutedExperts];
    }

    public HashSet<long> PoisonCalls { get; } = [];

    public ParameterLayout Layout { get; }

    public float[] Parameters { get; }

    public float[] Gradients { get; }

    public ReadOnlySpan<float> MaxLogits => maxLogits;

    public ReadOnlySpan<float> ExpertLoad => load;

    /// <summary>A bigram table has no router: the balance loss is always 0.</summary>
    public float SequenceBalanceAlpha { get; set; }

    public float BalanceLoss => 0f;

    public void InitializeWeights(ulong seed)
    {
        var g = TestUtil.Gaussian(Parameters.Length, (int)seed, 0.1f);
        g.CopyTo(Parameters, 0);
        foreach (var t in Layout.Tensors.Where(t => t.IsRoutingBias))
        {
            t.Of(Parameters).Clear();
        }
    }

    public void ZeroGradients() => Array.Clear(Gradients);

    public ReadOnlySpan<float> TokenLosses => tokenLosses.AsSpan(0, lastN);

    /// <summary>Forward only; a poisoned call makes every token's loss NaN.</summary>
    public float Forward(int[] tokens, int[] targets, int B, int T, int[]? routing = null)
    {
        if (routing is not null)
        {
            throw new ArgumentException("a bigram model has no routed experts to replay", nameof(routing));
        }

        int n = B * T;
        if (tokenLosses.Length < n)
        {
            tokenLosses = new float[n];
        }

        lastN = n;
        Array.Clear(load);
        float maxLogit = float.NegativeInfinity;
        double total = 0;
        int count = 0;
        for (int i = 0; i < n; i++)
        {
            var (logits, max, z) = Logits(tokens[i]);
            maxLogit = MathF.Max(maxLogit, max);
            for (int l = 1; l < Layout.Config.NumHiddenLayers; l++)
            {
                load[l * Layout.Config.NRoutedExperts + (tokens[i] + l) % Layout.Config.NRoutedExperts] += 1;
            }

            tokenLosses[i] = targets[i] < 0 ? 0f : (float)(Math.Log(z) + max - logits[targets[i]]);
            total += tokenLosses[i];
            count += targets[i] < 0 ? 0 : 1;
        }

        Array.Fill(maxLogits, maxLogit);
        if (PoisonCalls.Contains(calls++))
        {
            Array.Fill(tokenLosses, float.NaN, 0, n);
            return float.NaN;
        }

        return count == 0 ? 0f : (float)(total / count);
    }

    public float BackwardWeighted(int[] tokens, int[] targets, ReadOnlySpan<float> weights)
    {
        int D = Layout.Config.HiddenSize, V = Layout.Config.VocabSize;
        var w = Layout["lm_head.weight"].Of(Parameters);
        var gw = Layout["lm_head.weight"].Of(Gradients);
        double loss = 0;
        for (int i = 0; i < lastN; i++)
        {
            if (targets[i] < 0)
            {
                continue;
            }

            var h = Layout["model.embed_tokens.weight"].Of(Parameters).Slice(tokens[i] * D, D);
            var gh = Layout["model.embed_tokens.weight"].Of(Gradients).Slice(tokens[i] * D, D);
            var (logits, max, z) = Logits(tokens[i]);
            loss += weights[i] * tokenLosses[i];
            for (int v = 0; v < V; v++)
            {
                float p = ((float)(Math.Exp(logits[v] - max) / z) - (v == targets[i] ? 1f : 0f)) * weights[i];
                for (int d = 0; d < D; d++)
                {
                    gw[v * D + d] += p * h[d];
                    gh[d] += p * w[v * D + d];
                }
            }
        }

        return (float)loss;
    }

    /// <summary>logits = lm_head · embed[token], with their max and Σ exp(logit − max).</summary>
    private (float[] Logits, float Max, double Z) Logits(int token)
    {
        var c = Layout.Config;
        int V = c.VocabSize, D = c.HiddenSize;
        var h = Layout["model.embed_tokens.weight"].Of(Parameters).Slice(token * D, D);
        var w = Layout["lm_head.weight"].Of(Parameters);
        var logits = new float[V];
        float max = float.NegativeInfinity;
        for (int v = 0; v < V; v++)
        {
            float s = 0;
            for (int d = 0; d < D; d++)
            {
                s += w[v * D + d] * h[d];
            }

            logits[v] = s;
            max = MathF.Max(max, s);
        }

        double z = 0;
        for (int v = 0; v < V; v++)
        {
            z += Math.Exp(logits[v] - max);
        }

        return (logits, max, z);
    }
}
