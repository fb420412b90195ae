using K2RL.CheckpointEngine.Planning;
using K2RL.Model;

namespace K2RL.Cli.Commands;

/// <summary>
/// The tensors a weight update ships for a model config, as the planner's descriptors: the model's own layout
/// (<see cref="ParameterLayout"/>, Hugging Face names in layout order) in the dtype the inference engine receives, with
/// vLLM's tensor-parallel rule for DeepSeek-V3-style models. The one place that maps this model onto the planner.
/// </summary>
internal static class CkptTensors
{
    /// <summary>The dtypes <c>--dtype</c> takes.</summary>
    public static readonly IReadOnlyList<string> DTypes = ["fp8", "bf16", "f32"];

    /// <summary>DeepSeek-V3 / Kimi-K2 FP8 checkpoints: one fp32 scale per 128 × 128 block of each fp8 weight.</summary>
    public const int Fp8Block = 128;

    public static List<TensorDescriptor> Build(ModelConfig config, string dtype)
    {
        var layout = new ParameterLayout(config);
        var list = new List<TensorDescriptor>(layout.Tensors.Count * 2);
        foreach (var t in layout.Tensors)
        {
            var rule = Rule(t);
            if (dtype == "fp8" && IsQuantized(t))
            {
                list.Add(new TensorDescriptor(t.Name, t.Length, rule, t.ExpertIndex));
                long blocks = (long)Ceil(t.Rows, Fp8Block) * Ceil(t.Cols, Fp8Block);
                list.Add(new TensorDescriptor(t.Name + "_scale_inv", blocks * 4, rule, t.ExpertIndex));
                continue;
            }

            int bytesPerElement = t.IsRoutingBias || dtype == "f32" ? 4 : 2;
            list.Add(new TensorDescriptor(t.Name, t.Length * bytesPerElement, rule, t.ExpertIndex));
        }

        return list;
    }

    /// <summary>What <see cref="Build"/> assumed, for the plan's assumptions.</summary>
    public static string Describe(string dtype) => dtype switch
    {
        "fp8" => "fp8 as DeepSeek-V3/Kimi-K2 release their checkpoints: every linear weight of attention and MLPs e4m3 (1 byte/param) "
                 + $"with an fp32 weight_scale_inv per {Fp8Block}×{Fp8Block} block (a tensor of its own); embeddings, lm_head, norms "
                 + "and the router bf16; e_score_correction_bias fp32",
        "bf16" => "bf16 (2 bytes/param); e_score_correction_bias fp32",
        _ => "f32 (4 bytes/param), K2RL's own training dtype",
    } + "; tensor-parallel rule of vLLM's DeepSeek-V2/V3 model: embeddings, lm_head, q_b/kv_b/o projections, shared and dense MLPs "
      + "split 1/tp; q_a, kv_a projections, norms and the router replicated; routed experts split 1/tp (whole per rank under expert parallelism)";

    private static bool IsQuantized(TensorSlot t) =>
        t.IsMatrix && t.Name != "model.embed_tokens.weight" && t.Name != "lm_head.weight" && !t.Name.EndsWith(".mlp.gate.weight", StringComparison.Ordinal);

    private static ShardRule Rule(TensorSlot t)
    {
        if (t.ExpertIndex >= 0)
        {
            return ShardRule.Expert;
        }

        if (!t.IsMatrix || t.Name.EndsWith(".mlp.gate.weight", StringComparison.Ordinal)
            || t.Name.EndsWith(".q_a_proj.weight", StringComparison.Ordinal) || t.Name.EndsWith(".kv_a_proj_with_mqa.weight", StringComparison.Ordinal))
        {
            return ShardRule.Replicated;
        }

        return ShardRule.Split;
    }

    private static int Ceil(int a, int b) => (a + b - 1) / b;
}
