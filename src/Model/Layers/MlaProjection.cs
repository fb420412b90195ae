using K2RL.Kernels;

namespace K2RL.Model.Layers;

/// <summary>
/// MLA's query and latent projections (SPEC §1 MLA items 1, 2 and 4) for up to Capacity tokens, written once for
/// training (these buffers are its saved activations), prefill and absorbed decode:
///   cq = RMSNorm(x Wqaᵀ); q = cq Wqbᵀ (or q = x Wqᵀ)     → [n, H, Dn+Dr], RoPE on each head's Dr part
///   [c | k_pe] = x Wkvaᵀ (one product: the two weights are adjacent rows of kv_a_proj), split; RoPE on k_pe
///   (one head, shared); c = RMSNorm(c)
/// Letters: n tokens, D hidden, H heads, Dn/Dr head dims, Rq q_lora_rank, R kv_lora_rank.
/// </summary>
public sealed class MlaProjection
{
    private readonly MlaDims m;
    private readonly float eps;
    private readonly float[] ropeCos, ropeSin;   // [maxPos, Dr/2]

    public MlaProjection(ModelConfig config, int capacity, float[] ropeCos, float[] ropeSin)
    {
        m = config.Mla;
        eps = config.RmsNormEps;
        this.ropeCos = ropeCos;
        this.ropeSin = ropeSin;
        int C = capacity;
        Qa = new float[C * m.Rq];
        QaN = new float[C * m.Rq];
        RstdQa = new float[m.HasQLora ? C : 0];
        Q = new float[C * m.HQ];
        KvA = new float[C * m.RD];
        CRaw = new float[C * m.R];
        CN = new float[C * m.R];
        RstdKv = new float[C];
        Kpe = new float[C * m.Dr];
    }

    public float[] Qa { get; }        // [C, Rq] q_a_proj output
    public float[] QaN { get; }       // [C, Rq] normed
    public float[] RstdQa { get; }    // [C]
    public float[] Q { get; }         // [C, H*(Dn+Dr)] after RoPE
    public float[] KvA { get; }       // [C, R+Dr] kv_a_proj output (split into CRaw | Kpe); training reuses it for its gradient
    public float[] CRaw { get; }      // [C, R]
    public float[] CN { get; }        // [C, R] normed latent (what the cache holds)
    public float[] RstdKv { get; }    // [C]
    public float[] Kpe { get; }       // [C, Dr] after RoPE (what the cache holds)

    /// <summary>q, c and k_pe of the n input-normed tokens x[n, D] at positions[n].</summary>
    public void Forward(float[] x, ReadOnlySpan<int> positions, int n, float[] parameters, LayerSlots s, Projector product)
    {
        int D = m.D, Rq = m.Rq, HQ = m.HQ, R = m.R, Dr = m.Dr, RD = m.RD;
        if (m.HasQLora)
        {
            product.Forward(Qa, x, parameters, s.QA, n, D, Rq);
            RmsNorm.Forward(QaN, RstdQa, Qa, parameters.AsSpan(s.QANorm, Rq), n, Rq, eps);
            product.Forward(Q, QaN, parameters, s.QB, n, Rq, HQ);
        }
        else
        {
            product.Forward(Q, x, parameters, s.Q, n, D, HQ);
        }

        Rope.Apply(Q, positions, ropeCos, ropeSin, n, HQ, m.H, m.QkHead, m.Dn, Dr);
        product.Forward(KvA, x, parameters, s.KvA, n, D, RD);
        for (int r = 0; r < n; r++)
        {
            KvA.AsSpan(r * RD, R).CopyTo(CRaw.AsSpan(r * R, R));
            KvA.AsSpan(r * RD + R, Dr).CopyTo(Kpe.AsSpan(r * Dr, Dr));
        }

        Rope.Apply(Kpe, positions, ropeCos, ropeSin, n, Dr, 1, Dr, 0, Dr);
        RmsNorm.Forward(CN, RstdKv, CRaw, parameters.AsSpan(s.KvNorm, R), n, R, eps);
    }
}
