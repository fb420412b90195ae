namespace K2RL.Model.Layers;

/// <summary>
/// The shape of one MLA layer (SPEC §1 MLA), derived from the config here and nowhere else: the parameter
/// layout, training, prefill, absorbed decode, the cache and QK-Clip all read it.
/// Letters: D hidden, H heads, Dn/Dr/Dv head dims, Rq q_lora_rank (0 without one), R kv_lora_rank.
/// </summary>
public readonly record struct MlaDims
{
    public MlaDims(ModelConfig config)
    {
        D = config.HiddenSize;
        H = config.NumAttentionHeads;
        Dn = config.QkNopeHeadDim;
        Dr = config.QkRopeHeadDim;
        Dv = config.VHeadDim;
        R = config.KvLoraRank;
        HasQLora = config.QLoraRank is not null;
        Rq = config.QLoraRank ?? 0;
    }

    public int D { get; }
    public int H { get; }
    public int Dn { get; }
    public int Dr { get; }
    public int Dv { get; }
    public int R { get; }
    public int Rq { get; }

    /// <summary>q = q_b_proj(RMSNorm(q_a_proj x)) when true, else q = q_proj x.</summary>
    public bool HasQLora { get; }

    /// <summary>One head's query (and key) width: [q_nope | q_pe], Dn + Dr.</summary>
    public int QkHead => Dn + Dr;

    /// <summary>One head's rows of kv_b_proj: [k_nope | v], Dn + Dv.</summary>
    public int KvHead => Dn + Dv;

    /// <summary>A token's query row, H·(Dn + Dr).</summary>
    public int HQ => H * QkHead;

    /// <summary>A token's kv_b_proj output row, H·(Dn + Dv).</summary>
    public int HKV => H * KvHead;

    /// <summary>A token's attention output row (o_proj's input), H·Dv.</summary>
    public int HDv => H * Dv;

    /// <summary>kv_a_proj's output [c | k_pe] and a cached token's row per layer, R + Dr.</summary>
    public int RD => R + Dr;
}
