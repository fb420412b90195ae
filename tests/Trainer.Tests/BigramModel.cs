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

    public float Forward(int[] tokens, int[] targets, int B, int T) => Run(tokens, targets, B * T, backward: false);

    public float ForwardBackward(int[] tokens, int[] targets, int B, int T) => Run(tokens, targets, B * T, backward: true);

    private float Run(int[] tokens, int[] targets, int n, bool backward)
    {
        long call = calls++;
        var c = Layout.Config;
        int V = c.VocabSize, D = c.HiddenSize, E = c.NRoutedExperts;
        var emb = Layout["model.embed_tokens.weight"];
        var head = Layout["lm_head.weight"];
        var logits = new float[V];
        double total = 0;
        float maxLogit = float.NegativeInfinity;
        Array.Clear(load);
        for (int i = 0; i < n; i++)
        {
            var h = emb.Of(Parameters).Slice(tokens[i] * D, D);
            var w = head.Of(Parameters);
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

            maxLogit = MathF.Max(maxLogit, max);
            double z = 0;
            for (int v = 0; v < V; v++)
            {
                z += Math.Exp(logits[v] - max);
            }

            total += Math.Log(z) + max - logits[targets[i]];
            for (int l = 1; l < c.NumHiddenLayers; l++)
            {
                load[l * E + (tokens[i] + l) % E] += 1;
            }

            if (!backward)
            {
                continue;
            }

            var gw = head.Of(Gradients);
            var gh = emb.Of(Gradients).Slice(tokens[i] * D, D);
            for (int v = 0; v < V; v++)
            {
                float p = (float)(Math.Exp(logits[v] - max) / z) - (v == targets[i] ? 1f : 0f);
                p /= n;
                for (int d = 0; d < D; d++)
                {
                    gw[v * D + d] += p * h[d];
                    gh[d] += p * w[v * D + d];
                }
            }
        }

        Array.Fill(maxLogits, maxLogit);
        return PoisonCalls.Contains(call) ? float.NaN : (float)(total / n);
    }
}
