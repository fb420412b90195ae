using K2RL.Tests.Shared;

namespace K2RL.Model.Tests;

/// <summary>Presets and test weights shared by the model tests.</summary>
internal static class ModelTestUtil
{
    public static ModelConfig Preset(string name) =>
        ModelConfig.Load(Path.Combine(ExternalTools.RepoRoot(), "configs", "models", name + ".json"));

    /// <summary>
    /// Test weights with O(1) activations (unlike the 0.02 training init): matrices N(0, 1/in), norms
    /// 1 + N(0, 0.1²), router rows N(0, 9/D) and correction bias N(0, 0.1²) so that routing margins are wide and
    /// the bias actually changes choices.
    /// </summary>
    public static void FillTestWeights(K2Model model, int seed)
    {
        var rng = new Random(seed);
        double Gauss() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        Array.Clear(model.Parameters);
        foreach (var t in model.Layout.Tensors)
        {
            var s = t.Of(model.Parameters);
            double std = t.IsRoutingBias ? 0.1
                : !t.IsMatrix ? 0.1
                : t.Name.EndsWith("mlp.gate.weight", StringComparison.Ordinal) ? 3.0 / Math.Sqrt(t.Cols)
                : 1.0 / Math.Sqrt(t.Cols);
            double mean = !t.IsMatrix && !t.IsRoutingBias ? 1.0 : 0.0;
            for (int i = 0; i < s.Length; i++)
            {
                s[i] = (float)(mean + std * Gauss());
            }
        }
    }

    public static (int[] Tokens, int[] Targets) RandomBatch(int V, int N, int seed, bool withIgnored = true)
    {
        var rng = new Random(seed);
        var tokens = new int[N];
        var targets = new int[N];
        for (int n = 0; n < N; n++)
        {
            tokens[n] = rng.Next(V);
            targets[n] = withIgnored && n % 7 == 3 ? -1 : rng.Next(V);
        }

        return (tokens, targets);
    }
}
