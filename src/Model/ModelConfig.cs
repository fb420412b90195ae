using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Model.Layers;

namespace K2RL.Model;

/// <summary>
/// The model's shape, read from and written to Hugging Face `config.json` keys (DeepSeek-V3 / Kimi-K2).
/// Immutable; validated when built. Letters: D hidden, V vocab, H heads, Dn qk_nope_head_dim,
/// Dr qk_rope_head_dim, Dv v_head_dim, Rq q_lora_rank, R kv_lora_rank, E routed experts, K experts per
/// token, F expert hidden size, I dense hidden size.
/// </summary>
public sealed record ModelConfig
{
    // ---- identity
    public string ModelType { get; init; } = "kimi_k2";

    // ---- trunk
    public required int VocabSize { get; init; }                 // V
    public required int HiddenSize { get; init; }                // D
    public required int NumHiddenLayers { get; init; }
    public required int IntermediateSize { get; init; }          // I (dense layers' SwiGLU)
    public float RmsNormEps { get; init; } = 1e-6f;
    public int MaxPositionEmbeddings { get; init; } = 4096;
    public bool TieWordEmbeddings { get; init; }

    // ---- MLA attention
    public required int NumAttentionHeads { get; init; }         // H
    public int? QLoraRank { get; init; }                         // Rq; null: q = q_proj x
    public required int KvLoraRank { get; init; }                // R
    public required int QkNopeHeadDim { get; init; }             // Dn
    public required int QkRopeHeadDim { get; init; }             // Dr
    public required int VHeadDim { get; init; }                  // Dv

    // ---- RoPE
    public double RopeTheta { get; init; } = 10000.0;
    public RopeScaling? RopeScaling { get; init; }

    // ---- MoE
    public required int NRoutedExperts { get; init; }            // E
    public required int NumExpertsPerTok { get; init; }          // K
    public required int MoeIntermediateSize { get; init; }       // F
    public int NSharedExperts { get; init; } = 1;
    public int FirstKDenseReplace { get; init; } = 1;
    public int MoeLayerFreq { get; init; } = 1;
    public int NGroup { get; init; } = 1;
    public int TopkGroup { get; init; } = 1;
    public float RoutedScalingFactor { get; init; } = 1f;
    public bool NormTopkProb { get; init; } = true;
    public string ScoringFunc { get; init; } = "sigmoid";

    /// <summary>The MLA shapes derived from these fields (<see cref="MlaDims"/>).</summary>
    public MlaDims Mla => new(this);

    /// <summary>Pre-softmax logit scale (Dn+Dr)^-1/2 (YaRN's mscale², when configured, multiplies it).</summary>
    public float SoftmaxScale
    {
        get
        {
            double scale = 1.0 / Math.Sqrt(Mla.QkHead);
            if (RopeScaling is { } rs && rs.MscaleAllDim > 0 && rs.Factor > 1)
            {
                double m = 0.1 * rs.MscaleAllDim * Math.Log(rs.Factor) + 1.0;
                scale *= m * m;
            }

            return (float)scale;
        }
    }

    /// <summary>Whether layer i uses the MoE FFN (else the dense SwiGLU MLP).</summary>
    public bool IsMoeLayer(int layer) =>
        NRoutedExperts > 0 && layer >= FirstKDenseReplace && layer % Math.Max(MoeLayerFreq, 1) == 0;

    /// <summary>Index of layer i among the MoE layers (−1 for a dense layer).</summary>
    public int MoeIndex(int layer) =>
        IsMoeLayer(layer) ? Enumerable.Range(0, layer).Count(IsMoeLayer) : -1;

    /// <summary>
    /// Expert ids per token in a routing record (routing replay): for each MoE layer in order, the K experts the
    /// token went to, best first. 0 for a dense model.
    /// </summary>
    public int RoutingStride => Enumerable.Range(0, NumHiddenLayers).Count(IsMoeLayer) * NumExpertsPerTok;

    // ------------------------------------------------------------------ loading

    public static ModelConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new ConfigException($"model config not found: {path}");
        }

        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses config.json text; <paramref name="source"/> names the file in errors.</summary>
    public static ModelConfig Parse(string json, string source = "config.json")
    {
        JsonObject obj;
        try
        {
            obj = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions
            {
                CommentHandling = JsonCommentHandling.Skip,
                AllowTrailingCommas = true,
                AllowDuplicateProperties = false,
            }) as JsonObject ?? throw new ConfigException($"{source}: the top level must be a JSON object");
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{source}: malformed JSON at line {e.LineNumber + 1}: {e.Message}", e);
        }

        var r = new Reader(obj, source);
        RefuseUnimplemented(r, source);
        var config = new ModelConfig
        {
            ModelType = r.Str("model_type", "kimi_k2"),
            VocabSize = r.Int("vocab_size"),
            HiddenSize = r.Int("hidden_size"),
            NumHiddenLayers = r.Int("num_hidden_layers"),
            IntermediateSize = r.Int("intermediate_size"),
            RmsNormEps = (float)r.Num("rms_norm_eps", 1e-6),
            MaxPositionEmbeddings = r.Int("max_position_embeddings", 4096),
            TieWordEmbeddings = r.Bool("tie_word_embeddings", false),
            NumAttentionHeads = r.Int("num_attention_heads"),
            QLoraRank = r.NullableInt("q_lora_rank"),
            KvLoraRank = r.Int("kv_lora_rank"),
            QkNopeHeadDim = r.Int("qk_nope_head_dim"),
            QkRopeHeadDim = r.Int("qk_rope_head_dim"),
            VHeadDim = r.Int("v_head_dim"),
            RopeTheta = r.Num("rope_theta", 10000.0),
            RopeScaling = RopeScaling.Read(obj["rope_scaling"], source),
            NRoutedExperts = r.Int("n_routed_experts", 0),
            NumExpertsPerTok = r.Int("num_experts_per_tok", 0),
            MoeIntermediateSize = r.Int("moe_intermediate_size", 0),
            NSharedExperts = r.Int("n_shared_experts", 0),
            FirstKDenseReplace = r.Int("first_k_dense_replace", 0),
            MoeLayerFreq = r.Int("moe_layer_freq", 1),
            NGroup = r.Int("n_group", 1),
            TopkGroup = r.Int("topk_group", 1),
            RoutedScalingFactor = (float)r.Num("routed_scaling_factor", 1.0),
            NormTopkProb = r.Bool("norm_topk_prob", true),
            ScoringFunc = r.Str("scoring_func", "sigmoid"),
        };
        config.Validate(source);
        return config;
    }

    /// <summary>The model types whose config.json K2RL reads (DeepSeek-V3's architecture, which Kimi K2 uses).</summary>
    public static readonly IReadOnlyList<string> ModelTypes = ["kimi_k2", "deepseek_v3"];

    /// <summary>
    /// Hugging Face keys that describe a model K2RL does not implement: present with any value but the one K2RL
    /// computes, the file describes another model, so loading it would silently give different outputs.
    /// </summary>
    private static void RefuseUnimplemented(Reader r, string source)
    {
        string Must(string key, string value, string why)
        {
            string got = r.Str(key, value);
            return got == value ? got : throw new ConfigException($"{source}: \"{key}\" \"{got}\" is not supported ({why})");
        }

        Must("hidden_act", "silu", "K2RL's MLPs and experts are SwiGLU with SiLU");
        Must("topk_method", "noaux_tc", "K2RL routes with sigmoid scores plus the balancing bias, DeepSeek-V3's \"noaux_tc\"");
        if (r.Bool("attention_bias", false))
        {
            throw new ConfigException($"{source}: \"attention_bias\" true is not supported (K2RL's attention projections have no bias)");
        }

        if (r.Bool("mlp_bias", false))
        {
            throw new ConfigException($"{source}: \"mlp_bias\" true is not supported (K2RL's MLPs have no bias)");
        }

        if (r.Has("quantization_config"))
        {
            throw new ConfigException($"{source}: \"quantization_config\" is not supported (K2RL reads f32, bf16 or f16 weights, not quantized ones)");
        }

        if (r.NullableInt("pretraining_tp") is { } tp && tp != 1)
        {
            throw new ConfigException($"{source}: \"pretraining_tp\" {tp} is not supported (only 1)");
        }

        if (r.Str("model_type", "kimi_k2") is var type && !ModelTypes.Contains(type))
        {
            throw new ConfigException($"{source}: \"model_type\" \"{type}\" is not supported (one of {string.Join(", ", ModelTypes)})");
        }
    }

    /// <summary>
    /// Bounds of each size key: far above any published model (Kimi K2: 7168 hidden, 61 layers, 384 experts,
    /// 163,840 tokens) and low enough that every product K2RL forms from them fits its integer type.
    /// </summary>
    private static readonly (string Key, Func<ModelConfig, long> Get, long Max)[] SizeLimits =
    [
        ("vocab_size", c => c.VocabSize, 1 << 24),
        ("hidden_size", c => c.HiddenSize, 1 << 16),
        ("num_hidden_layers", c => c.NumHiddenLayers, 1 << 10),
        ("intermediate_size", c => c.IntermediateSize, 1 << 18),
        ("num_attention_heads", c => c.NumAttentionHeads, 1 << 10),
        ("q_lora_rank", c => c.QLoraRank ?? 0, 1 << 16),
        ("kv_lora_rank", c => c.KvLoraRank, 1 << 16),
        ("qk_nope_head_dim", c => c.QkNopeHeadDim, 1 << 12),
        ("qk_rope_head_dim", c => c.QkRopeHeadDim, 1 << 12),
        ("v_head_dim", c => c.VHeadDim, 1 << 12),
        ("max_position_embeddings", c => c.MaxPositionEmbeddings, 1 << 24),
        ("n_routed_experts", c => c.NRoutedExperts, 1 << 14),
        ("moe_intermediate_size", c => c.MoeIntermediateSize, 1 << 18),
        ("n_shared_experts", c => c.NSharedExperts, 1 << 6),
        ("n_group", c => c.NGroup, 1 << 10),
        ("moe_layer_freq", c => c.MoeLayerFreq, 1 << 10),
        ("first_k_dense_replace", c => c.FirstKDenseReplace, 1 << 10),
    ];

    /// <summary>The largest tensor K2RL will lay out, in elements: every tensor is addressed by an int span.</summary>
    public const long MaxTensorElements = int.MaxValue;

    /// <summary>Checks every field; throws <see cref="ConfigException"/> naming the key.</summary>
    public ModelConfig Validate(string source = "config")
    {
        void Positive(int v, string key)
        {
            if (v <= 0)
            {
                throw new ConfigException($"{source}: \"{key}\" must be > 0, got {v}");
            }
        }

        Positive(VocabSize, "vocab_size");
        Positive(HiddenSize, "hidden_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(IntermediateSize, "intermediate_size");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(KvLoraRank, "kv_lora_rank");
        Positive(QkNopeHeadDim, "qk_nope_head_dim");
        Positive(QkRopeHeadDim, "qk_rope_head_dim");
        Positive(VHeadDim, "v_head_dim");
        Positive(MaxPositionEmbeddings, "max_position_embeddings");
        if (QLoraRank is { } rq)
        {
            Positive(rq, "q_lora_rank");
        }

        foreach (var (key, get, max) in SizeLimits)
        {
            if (get(this) > max)
            {
                throw new ConfigException($"{source}: \"{key}\" {get(this)} is above K2RL's limit {max}");
            }
        }

        if (MoeLayerFreq <= 0)
        {
            throw new ConfigException($"{source}: \"moe_layer_freq\" must be >= 1, got {MoeLayerFreq}");
        }

        // The widest matrices: embeddings/head [V, D], the experts' and MLP's [F or I, D], the attention's [H·(Dn+Dr), Rq or D].
        long largest = new[]
        {
            (long)VocabSize * HiddenSize, (long)IntermediateSize * HiddenSize, (long)MoeIntermediateSize * HiddenSize,
            (long)NumAttentionHeads * (QkNopeHeadDim + QkRopeHeadDim) * (QLoraRank ?? HiddenSize),
            (long)NumAttentionHeads * (QkNopeHeadDim + VHeadDim) * KvLoraRank, (long)NumAttentionHeads * VHeadDim * HiddenSize,
        }.Max();
        if (largest > MaxTensorElements)
        {
            throw new ConfigException($"{source}: a tensor of this config would hold {largest} elements, above K2RL's limit {MaxTensorElements}");
        }

        if (QkRopeHeadDim % 2 != 0)
        {
            throw new ConfigException($"{source}: \"qk_rope_head_dim\" must be even (RoPE rotates pairs), got {QkRopeHeadDim}");
        }

        if (!(RmsNormEps > 0) || !(RmsNormEps <= 0.1f))
        {
            throw new ConfigException($"{source}: \"rms_norm_eps\" must be in (0, 0.1], got {RmsNormEps}");
        }

        if (!(RopeTheta >= 1) || !(RopeTheta <= 1e12))
        {
            throw new ConfigException($"{source}: \"rope_theta\" must be in [1, 1e12], got {RopeTheta}");
        }

        if (FirstKDenseReplace < 0)
        {
            throw new ConfigException($"{source}: \"first_k_dense_replace\" must be >= 0, got {FirstKDenseReplace}");
        }

        bool anyMoe = Enumerable.Range(0, NumHiddenLayers).Any(IsMoeLayer);
        if (anyMoe)
        {
            Positive(NRoutedExperts, "n_routed_experts");
            Positive(MoeIntermediateSize, "moe_intermediate_size");
            Positive(NGroup, "n_group");
            Positive(TopkGroup, "topk_group");
            if (NumExpertsPerTok <= 0 || NumExpertsPerTok > NRoutedExperts)
            {
                throw new ConfigException(
                    $"{source}: \"num_experts_per_tok\" must be in [1, n_routed_experts = {NRoutedExperts}], got {NumExpertsPerTok}");
            }

            if (NRoutedExperts % NGroup != 0)
            {
                throw new ConfigException($"{source}: \"n_routed_experts\" ({NRoutedExperts}) must divide into \"n_group\" ({NGroup}) groups");
            }

            if (TopkGroup > NGroup)
            {
                throw new ConfigException($"{source}: \"topk_group\" ({TopkGroup}) must be <= \"n_group\" ({NGroup})");
            }

            if (NumExpertsPerTok > TopkGroup * (NRoutedExperts / NGroup))
            {
                throw new ConfigException(
                    $"{source}: \"num_experts_per_tok\" ({NumExpertsPerTok}) exceeds the experts in the kept groups ({TopkGroup} × {NRoutedExperts / NGroup})");
            }

            if (NSharedExperts < 0)
            {
                throw new ConfigException($"{source}: \"n_shared_experts\" must be >= 0, got {NSharedExperts}");
            }

            if (ScoringFunc != "sigmoid")
            {
                throw new ConfigException($"{source}: \"scoring_func\" \"{ScoringFunc}\" is not supported (K2 uses \"sigmoid\")");
            }

            if (!(RoutedScalingFactor > 0) || !(RoutedScalingFactor <= 1000))
            {
                throw new ConfigException($"{source}: \"routed_scaling_factor\" must be in (0, 1000], got {RoutedScalingFactor}");
            }
        }

        return this;
    }

    /// <summary>The config.json keys whose values differ from <paramref name="other"/>'s, as "key: mine vs theirs".</summary>
    public IReadOnlyList<string> Differences(ModelConfig other)
    {
        var mine = JsonNode.Parse(ToJson())!.AsObject();
        var theirs = JsonNode.Parse(other.ToJson())!.AsObject();
        return mine.Where(p => !JsonNode.DeepEquals(p.Value, theirs[p.Key]))
            .Select(p => $"{p.Key}: {p.Value?.ToJsonString() ?? "null"} vs {theirs[p.Key]?.ToJsonString() ?? "null"}")
            .ToList();
    }

    /// <summary>The Hugging Face `config.json` text (DeepseekV3ForCausalLM layout).</summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("DeepseekV3ForCausalLM"),
            ["model_type"] = ModelType,
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["moe_intermediate_size"] = MoeIntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["first_k_dense_replace"] = FirstKDenseReplace,
            ["moe_layer_freq"] = MoeLayerFreq,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumAttentionHeads,
            ["q_lora_rank"] = QLoraRank,
            ["kv_lora_rank"] = KvLoraRank,
            ["qk_nope_head_dim"] = QkNopeHeadDim,
            ["qk_rope_head_dim"] = QkRopeHeadDim,
            ["v_head_dim"] = VHeadDim,
            ["n_routed_experts"] = NRoutedExperts,
            ["num_experts_per_tok"] = NumExpertsPerTok,
            ["n_shared_experts"] = NSharedExperts,
            ["n_group"] = NGroup,
            ["topk_group"] = TopkGroup,
            ["routed_scaling_factor"] = RoutedScalingFactor,
            ["norm_topk_prob"] = NormTopkProb,
            ["scoring_func"] = ScoringFunc,
            ["topk_method"] = "noaux_tc",
            ["rope_theta"] = RopeTheta,
            ["rope_scaling"] = RopeScaling?.ToJson(),
            ["rms_norm_eps"] = RmsNormEps,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["hidden_act"] = "silu",
            ["attention_bias"] = false,
            ["torch_dtype"] = "float32",
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Reads typed values, naming the file and key when one is missing or of the wrong type.</summary>
    private sealed class Reader(JsonObject obj, string source)
    {
        public bool Has(string key) => obj.TryGetPropertyValue(key, out var node) && node is not null;

        public int Int(string key, int? fallback = null)
        {
            if (!obj.TryGetPropertyValue(key, out var node) || node is null)
            {
                return fallback ?? throw new ConfigException($"{source}: required key \"{key}\" is missing");
            }

            if (node is JsonValue v && v.TryGetValue(out long l) && l is >= int.MinValue and <= int.MaxValue)
            {
                return (int)l;
            }

            if (node is JsonValue d && d.TryGetValue(out double x) && x == Math.Floor(x) && Math.Abs(x) <= int.MaxValue)
            {
                return (int)x;
            }

            throw new ConfigException($"{source}: \"{key}\" must be an integer, got {node.ToJsonString()}");
        }

        public int? NullableInt(string key)
        {
            if (!obj.TryGetPropertyValue(key, out var node) || node is null)
            {
                return null;
            }

            return Int(key);
        }

        public double Num(string key, double fallback)
        {
            if (!obj.TryGetPropertyValue(key, out var node) || node is null)
            {
                return fallback;
            }

            if (node is JsonValue v && v.TryGetValue(out double d))
            {
                return d;
            }

            throw new ConfigException($"{source}: \"{key}\" must be a number, got {node.ToJsonString()}");
        }

        public bool Bool(string key, bool fallback)
        {
            if (!obj.TryGetPropertyValue(key, out var node) || node is null)
            {
                return fallback;
            }

            if (node is JsonValue v && v.TryGetValue(out bool b))
            {
                return b;
            }

            throw new ConfigException($"{source}: \"{key}\" must be true or false, got {node.ToJsonString()}");
        }

        public string Str(string key, string fallback)
        {
            if (!obj.TryGetPropertyValue(key, out var node) || node is null)
            {
                return fallback;
            }

            if (node is JsonValue v && v.TryGetValue(out string? s))
            {
                return s;
            }

            throw new ConfigException($"{source}: \"{key}\" must be a string, got {node.ToJsonString()}");
        }
    }
}

/// <summary>YaRN RoPE scaling as DeepSeek-V3 configures it (`rope_scaling` with type "yarn").</summary>
public sealed record RopeScaling(
    string Type,
    double Factor,
    int OriginalMaxPositionEmbeddings,
    double BetaFast,
    double BetaSlow,
    double Mscale,
    double MscaleAllDim)
{
    internal static RopeScaling? Read(JsonNode? node, string source)
    {
        if (node is null)
        {
            return null;
        }

        if (node is not JsonObject o)
        {
            throw new ConfigException($"{source}: \"rope_scaling\" must be an object or null");
        }

        string Text(string k) => o[k] switch
        {
            null => "",
            JsonValue v when v.TryGetValue(out string? t) => t,
            var other => throw new ConfigException($"{source}: \"rope_scaling.{k}\" must be a string, got {other.ToJsonString()}"),
        };

        double D(string k, double fallback, double min, double max)
        {
            if (o[k] is null)
            {
                return fallback;
            }

            if (o[k] is not JsonValue v || !v.TryGetValue(out double d))
            {
                throw new ConfigException($"{source}: \"rope_scaling.{k}\" must be a number, got {o[k]!.ToJsonString()}");
            }

            return d >= min && d <= max
                ? d
                : throw new ConfigException($"{source}: \"rope_scaling.{k}\" must be in [{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}], got {d.ToString(CultureInfo.InvariantCulture)}");
        }

        string type = Text("type") is { Length: > 0 } t1 ? t1 : Text("rope_type");
        if (type != "yarn")
        {
            throw new ConfigException($"{source}: \"rope_scaling.type\" \"{type}\" is not supported (only \"yarn\")");
        }

        var rs = new RopeScaling(type, D("factor", 1, 1, 1e4), (int)D("original_max_position_embeddings", 4096, 1, 1 << 24),
            D("beta_fast", 32, 0, 1e4), D("beta_slow", 1, 0, 1e4), D("mscale", 1, 0, 100), D("mscale_all_dim", 0, 0, 100));
        return rs;
    }

    internal JsonObject ToJson() => new()
    {
        ["type"] = Type,
        ["factor"] = Factor,
        ["original_max_position_embeddings"] = OriginalMaxPositionEmbeddings,
        ["beta_fast"] = BetaFast,
        ["beta_slow"] = BetaSlow,
        ["mscale"] = Mscale,
        ["mscale_all_dim"] = MscaleAllDim,
    };
}
