namespace K2RL.Model.IO;

/// <summary>
/// What a config costs, from the config alone (`k2rl model info`). Letters: L layers, H heads, Dn/Dr/Dv head
/// dims, R kv_lora_rank, T sequence length.
/// <list type="bullet">
/// <item>Parameters: <see cref="ParameterLayout.ParameterCount"/> / <see cref="ParameterLayout.ActivatedParameterCount"/>
/// (embeddings and head included, routing biases not: the published totals count that way).</item>
/// <item>KV cache per token: the compressed MLA cache holds L × (R + Dr) values (latent c after its norm, shared
/// rope key); the naive cache holds per-head keys and values, L × H × (Dn + Dr + Dv). Bytes at fp32 (×4) and bf16 (×2).</item>
/// <item>Training FLOPs per token = 6 × N_matmul + 6 × L × H × (Dn + Dr + Dv) × T. N_matmul is the activated
/// parameters that multiply activations: every activated weight matrix (attention projections, dense and
/// activated expert matrices, the router gate, <c>lm_head</c>), but not the embedding table (a lookup, unless
/// tied to the head) and not the norm weights. 6 = 2 (multiply-add) × 3 (forward, backward to activations,
/// backward to weights). The attention term counts the score (q·k over Dn+Dr) and value (over Dv) products
/// against all T positions, forward and backward, with no discount for the causal mask (the PaLM convention).</item>
/// </list>
/// </summary>
public sealed record ModelInfo(
    ModelConfig Config,
    long TotalParameters,
    long ActivatedParameters,
    long ActivatedMatmulParameters,
    long KvValuesPerTokenPerLayerCompressed,
    long KvValuesPerTokenPerLayerNaive,
    int SequenceLength)
{
    /// <summary>K2's pretraining context, the default sequence for the attention FLOPs (capped by the config's).</summary>
    public const int DefaultSequenceLength = 4096;

    public int Layers => Config.NumHiddenLayers;

    public int MoeLayers => Enumerable.Range(0, Config.NumHiddenLayers).Count(Config.IsMoeLayer);

    public long KvCacheBytesPerTokenCompressed => Layers * KvValuesPerTokenPerLayerCompressed * 4;

    public long KvCacheBytesPerTokenNaive => Layers * KvValuesPerTokenPerLayerNaive * 4;

    public double KvCacheRatio => (double)KvValuesPerTokenPerLayerNaive / KvValuesPerTokenPerLayerCompressed;

    public long MatmulFlopsPerToken => 6 * ActivatedMatmulParameters;

    public long AttentionFlopsPerToken =>
        6L * Layers * Config.NumAttentionHeads * (Config.Mla.QkHead + Config.VHeadDim) * SequenceLength;

    public long FlopsPerToken => MatmulFlopsPerToken + AttentionFlopsPerToken;

    public static ModelInfo Compute(ModelConfig config, int? sequenceLength = null)
    {
        int seq = sequenceLength ?? Math.Min(DefaultSequenceLength, config.MaxPositionEmbeddings);
        if (seq <= 0)
        {
            throw new K2RL.Common.ConfigException($"the sequence length must be > 0, got {seq}");
        }

        var layout = new ParameterLayout(config);
        long activated = layout.ActivatedParameterCount;

        // Not matmuls: the norm vectors (every 1-D tensor but the routing bias, which ParameterCount already
        // leaves out) and the embedding lookup, unless the head reuses it.
        long vectors = layout.Tensors.Where(t => !t.IsMatrix && !t.IsRoutingBias).Sum(t => t.Length);
        long embedding = config.TieWordEmbeddings ? 0 : layout["model.embed_tokens.weight"].Length;
        return new ModelInfo(
            config,
            layout.ParameterCount,
            activated,
            activated - vectors - embedding,
            config.Mla.RD,
            (long)config.NumAttentionHeads * (config.Mla.QkHead + config.VHeadDim),
            seq);
    }
}
