using System.Runtime.InteropServices;

namespace K2RL.Model;

/// <summary>One tensor of the model: its Hugging Face name, shape and place in the flat buffer.</summary>
/// <param name="Name">e.g. "model.layers.3.self_attn.q_b_proj.weight".</param>
/// <param name="Shape">row-major; matrices are [out, in] as in PyTorch's nn.Linear.</param>
/// <param name="Offset">first element in the flat buffer (a multiple of <see cref="ParameterLayout.Alignment"/>).</param>
/// <param name="ExpertIndex">the routed expert this tensor belongs to, or -1.</param>
public sealed record TensorSlot(string Name, int[] Shape, long Offset, int Layer, int ExpertIndex)
{
    public long Length { get; } = Shape.Aggregate(1L, (a, b) => a * b);

    public int Rows => Shape.Length == 2 ? Shape[0] : 1;

    public int Cols => Shape[^1];

    public bool IsMatrix => Shape.Length == 2;

    public Span<float> Of(float[] buffer) => buffer.AsSpan(checked((int)Offset), checked((int)Length));

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";

    /// <summary>
    /// The router's e_score_correction_bias: a buffer changed only by the balancing rule, never by a
    /// gradient; not counted as a parameter (which is how the published totals count it).
    /// </summary>
    public bool IsRoutingBias => Name.EndsWith(".e_score_correction_bias", StringComparison.Ordinal);
}

/// <summary>
/// Every parameter by its Hugging Face name over one flat fp32 buffer. Gradients and optimizer moments
/// use the same layout (same offsets in buffers of <see cref="TotalLength"/>). Tensors start on
/// 16-float (64-byte) boundaries so SIMD kernels see aligned rows; the padding between tensors is
/// always zero and belongs to no tensor.
/// </summary>
public sealed class ParameterLayout
{
    public const int Alignment = 16;

    private readonly Dictionary<string, TensorSlot> byName;

    public ParameterLayout(ModelConfig config)
    {
        Config = config;
        var slots = new List<TensorSlot>();
        long offset = 0;

        void Add(string name, int layer, int expert, params int[] shape)
        {
            var slot = new TensorSlot(name, shape, offset, layer, expert);
            slots.Add(slot);
            offset += (slot.Length + Alignment - 1) / Alignment * Alignment;
        }

        int D = config.HiddenSize, V = config.VocabSize;
        var m = config.Mla;
        Add("model.embed_tokens.weight", -1, -1, V, D);
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            Add(p + "input_layernorm.weight", i, -1, D);
            if (m.HasQLora)
            {
                Add(p + "self_attn.q_a_proj.weight", i, -1, m.Rq, D);
                Add(p + "self_attn.q_a_layernorm.weight", i, -1, m.Rq);
                Add(p + "self_attn.q_b_proj.weight", i, -1, m.HQ, m.Rq);
            }
            else
            {
                Add(p + "self_attn.q_proj.weight", i, -1, m.HQ, D);
            }

            Add(p + "self_attn.kv_a_proj_with_mqa.weight", i, -1, m.RD, D);
            Add(p + "self_attn.kv_a_layernorm.weight", i, -1, m.R);
            Add(p + "self_attn.kv_b_proj.weight", i, -1, m.HKV, m.R);
            Add(p + "self_attn.o_proj.weight", i, -1, D, m.HDv);
            Add(p + "post_attention_layernorm.weight", i, -1, D);
            if (config.IsMoeLayer(i))
            {
                int E = config.NRoutedExperts, F = config.MoeIntermediateSize;
                Add(p + "mlp.gate.weight", i, -1, E, D);
                Add(p + "mlp.gate.e_score_correction_bias", i, -1, E);
                for (int e = 0; e < E; e++)
                {
                    string q = $"{p}mlp.experts.{e}.";
                    Add(q + "gate_proj.weight", i, e, F, D);
                    Add(q + "up_proj.weight", i, e, F, D);
                    Add(q + "down_proj.weight", i, e, D, F);
                }

                if (config.NSharedExperts > 0)
                {
                    int Fs = F * config.NSharedExperts;
                    Add(p + "mlp.shared_experts.gate_proj.weight", i, -1, Fs, D);
                    Add(p + "mlp.shared_experts.up_proj.weight", i, -1, Fs, D);
                    Add(p + "mlp.shared_experts.down_proj.weight", i, -1, D, Fs);
                }
            }
            else
            {
                int I = config.IntermediateSize;
                Add(p + "mlp.gate_proj.weight", i, -1, I, D);
                Add(p + "mlp.up_proj.weight", i, -1, I, D);
                Add(p + "mlp.down_proj.weight", i, -1, D, I);
            }
        }

        Add("model.norm.weight", -1, -1, D);
        if (!config.TieWordEmbeddings)
        {
            Add("lm_head.weight", -1, -1, V, D);
        }

        Tensors = slots;
        TotalLength = offset;
        byName = slots.ToDictionary(s => s.Name, StringComparer.Ordinal);
    }

    public ModelConfig Config { get; }

    /// <summary>How many tensors the layout of <paramref name="config"/> holds, counted without building it.</summary>
    public static long TensorCount(ModelConfig config)
    {
        long perLayerCommon = 1 + (config.QLoraRank is null ? 1 : 3) + 4 + 1;     // norms, query, kv_a, kv_a norm, kv_b, o
        long moe = 2 + 3L * config.NRoutedExperts + (config.NSharedExperts > 0 ? 3 : 0);
        long moeLayers = Enumerable.Range(0, config.NumHiddenLayers).Count(config.IsMoeLayer);
        return 2 + (config.TieWordEmbeddings ? 0 : 1) + config.NumHiddenLayers * perLayerCommon
            + moeLayers * moe + (config.NumHiddenLayers - moeLayers) * 3;
    }

    /// <summary>Tensors in buffer order.</summary>
    public IReadOnlyList<TensorSlot> Tensors { get; }

    /// <summary>Floats in a buffer of this layout, padding included.</summary>
    public long TotalLength { get; }

    /// <summary>Number of trainable parameters (padding and routing-bias buffers excluded).</summary>
    public long ParameterCount => Tensors.Where(t => !t.IsRoutingBias).Sum(t => t.Length);

    /// <summary>
    /// Parameters one token touches: everything except the routed experts it is not sent to
    /// (K of E per MoE layer). Embeddings and the head are counted, as in the K2 report.
    /// </summary>
    public long ActivatedParameterCount
    {
        get
        {
            long routed = Tensors.Where(t => t.ExpertIndex >= 0).Sum(t => t.Length);
            int moeLayers = Enumerable.Range(0, Config.NumHiddenLayers).Count(Config.IsMoeLayer);
            long perExpert = 3L * Config.HiddenSize * Config.MoeIntermediateSize;
            return ParameterCount - routed + (long)moeLayers * Config.NumExpertsPerTok * perExpert;
        }
    }

    public bool Contains(string name) => byName.ContainsKey(name);

    public TensorSlot this[string name] => byName.TryGetValue(name, out var s)
        ? s
        : throw new KeyNotFoundException($"no tensor named \"{name}\" in this model's layout");

    public bool TryGet(string name, out TensorSlot slot) => byName.TryGetValue(name, out slot!);

    /// <summary>A zeroed buffer of this layout (parameters, gradients or one optimizer moment).</summary>
    public float[] NewBuffer() => new float[checked((int)TotalLength)];

    public Span<float> Span(float[] buffer, string name) => this[name].Of(buffer);
}
