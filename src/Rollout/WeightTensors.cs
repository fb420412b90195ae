using K2RL.CheckpointEngine;
using K2RL.Model;

namespace K2RL.Rollout;

/// <summary>The model's side of a checkpoint-engine manifest: its parameter layout as the engine's tensor descriptors.</summary>
public static class WeightTensors
{
    /// <summary>Every tensor of <paramref name="layout"/> (name, shape, offset in the flat buffer).</summary>
    public static IReadOnlyList<TensorSpec> ToTensorSpecs(this ParameterLayout layout) =>
        layout.Tensors.Select(t => new TensorSpec(t.Name, t.Shape.Select(d => (long)d).ToArray(), t.Offset)).ToList();
}
