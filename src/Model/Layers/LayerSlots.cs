namespace K2RL.Model.Layers;

/// <summary>
/// Offsets of one decoder layer's tensors in the flat parameter buffer (the same offsets index the gradient
/// buffer). Resolved once from the <see cref="ParameterLayout"/> so that a step does no name look-ups.
/// Absent tensors are -1.
/// </summary>
public sealed class LayerSlots
{
    public LayerSlots(ParameterLayout layout, int layer)
    {
        string p = $"model.layers.{layer}.";
        int Off(string name) => layout.TryGet(p + name, out var s) ? checked((int)s.Offset) : -1;
        var c = layout.Config;
        Layer = layer;
        InputNorm = Off("input_layernorm.weight");
        QA = Off("self_attn.q_a_proj.weight");
        QANorm = Off("self_attn.q_a_layernorm.weight");
        QB = Off("self_attn.q_b_proj.weight");
        Q = Off("self_attn.q_proj.weight");
        KvA = Off("self_attn.kv_a_proj_with_mqa.weight");
        KvNorm = Off("self_attn.kv_a_layernorm.weight");
        KvB = Off("self_attn.kv_b_proj.weight");
        O = Off("self_attn.o_proj.weight");
        PostNorm = Off("post_attention_layernorm.weight");
        IsMoe = c.IsMoeLayer(layer);
        MoeIndex = c.MoeIndex(layer);
        if (IsMoe)
        {
            Router = Off("mlp.gate.weight");
            RouterBias = Off("mlp.gate.e_score_correction_bias");
            int E = c.NRoutedExperts;
            ExpertGate = new int[E];
            ExpertUp = new int[E];
            ExpertDown = new int[E];
            for (int e = 0; e < E; e++)
            {
                ExpertGate[e] = Off($"mlp.experts.{e}.gate_proj.weight");
                ExpertUp[e] = Off($"mlp.experts.{e}.up_proj.weight");
                ExpertDown[e] = Off($"mlp.experts.{e}.down_proj.weight");
            }

            SharedGate = Off("mlp.shared_experts.gate_proj.weight");
            SharedUp = Off("mlp.shared_experts.up_proj.weight");
            SharedDown = Off("mlp.shared_experts.down_proj.weight");
            MlpGate = MlpUp = MlpDown = -1;
        }
        else
        {
            MlpGate = Off("mlp.gate_proj.weight");
            MlpUp = Off("mlp.up_proj.weight");
            MlpDown = Off("mlp.down_proj.weight");
            Router = RouterBias = SharedGate = SharedUp = SharedDown = -1;
            ExpertGate = ExpertUp = ExpertDown = [];
        }
    }

    /// <summary>Every layer's slots, in order.</summary>
    public static LayerSlots[] All(ParameterLayout layout) =>
        Enumerable.Range(0, layout.Config.NumHiddenLayers).Select(l => new LayerSlots(layout, l)).ToArray();

    public int Layer { get; }
    public bool IsMoe { get; }

    /// <summary>This layer's place among the MoE layers (its slice of a routing record), −1 when dense.</summary>
    public int MoeIndex { get; }
    public int InputNorm { get; }
    public int QA { get; }
    public int QANorm { get; }
    public int QB { get; }
    public int Q { get; }
    public int KvA { get; }
    public int KvNorm { get; }
    public int KvB { get; }
    public int O { get; }
    public int PostNorm { get; }
    public int MlpGate { get; }
    public int MlpUp { get; }
    public int MlpDown { get; }
    public int Router { get; }
    public int RouterBias { get; }
    public int[] ExpertGate { get; }
    public int[] ExpertUp { get; }
    public int[] ExpertDown { get; }
    public int SharedGate { get; }
    public int SharedUp { get; }
    public int SharedDown { get; }
}

/// <summary>Offsets of the tensors outside the layers: embedding, final norm, and the head (the embedding when tied).</summary>
public sealed record TrunkSlots(int Embed, int Norm, int Head)
{
    public static TrunkSlots From(ParameterLayout layout)
    {
        int embed = checked((int)layout["model.embed_tokens.weight"].Offset);
        return new TrunkSlots(embed, checked((int)layout["model.norm.weight"].Offset),
            layout.Config.TieWordEmbeddings ? embed : checked((int)layout["lm_head.weight"].Offset));
    }
}
