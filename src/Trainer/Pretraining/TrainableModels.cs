using K2RL.Model;

namespace K2RL.Trainer.Pretraining;

/// <summary>Builds the model the pretraining job trains.</summary>
public static class TrainableModels
{
    public static ITrainableModel Create(ModelConfig config) => new K2ModelAdapter(new K2Model(config));
}

/// <summary><see cref="K2Model"/> as a training step sees it (expert counts exposed as floats).</summary>
public sealed class K2ModelAdapter(K2Model model) : ITrainableModel
{
    private readonly float[] load = new float[model.Config.NumHiddenLayers * model.Config.NRoutedExperts];

    public K2Model Model { get; } = model;

    public ParameterLayout Layout => Model.Layout;

    public float[] Parameters => Model.Parameters;

    public float[] Gradients => Model.Gradients;

    public ReadOnlySpan<float> MaxLogits => Model.MaxLogits;

    public ReadOnlySpan<float> ExpertLoad
    {
        get
        {
            var counts = Model.ExpertCounts;
            for (int i = 0; i < load.Length && i < counts.Length; i++)
            {
                load[i] = counts[i];
            }

            return load;
        }
    }

    public float SequenceBalanceAlpha
    {
        get => Model.SequenceBalanceAlpha;
        set => Model.SequenceBalanceAlpha = value;
    }

    public float BalanceLoss => Model.BalanceLoss;

    public void InitializeWeights(ulong seed) => Model.InitializeWeights(seed);

    public void ZeroGradients() => Model.ZeroGradients();

    public float Forward(int[] tokens, int[] targets, int B, int T, int[]? routing = null) => Model.Forward(tokens, targets, B, T, routing);

    public int ReplayFlips => Model.ReplayFlips;

    public ReadOnlySpan<float> TokenLosses => Model.TokenLosses;

    public float BackwardWeighted(int[] tokens, int[] targets, ReadOnlySpan<float> weights) => Model.BackwardWeighted(tokens, targets, weights);
}
