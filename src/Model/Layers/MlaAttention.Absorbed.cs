using K2RL.Kernels;
using K2RL.Model.Inference;

namespace K2RL.Model.Layers;

/// <summary>
/// The weight-absorbed path for decoding over the compressed cache (SPEC §1 MLA item 6), after
/// <see cref="MlaProjection"/> has made q, c and k_pe and the caller has appended c and k_pe to the cache. With
/// W_UK_h and W_UV_h head h's k_nope and value rows of kv_b_proj:
///   q̃_h = W_UK_hᵀ q_nope_h (R values)                                   <see cref="AbsorbQueries"/>
///   score_hj = (q̃_h·c_j + q_pe_h·k_pe_j) · scale; ctx_h = Σ_j p_hj c_j   <see cref="AttendLatents"/>
///   o_h = W_UV_h ctx_h                                                   <see cref="AbsorbedOutput"/>
/// Letters: B sequences (one new token each), H heads, Dn/Dr/Dv head dims, R kv_lora_rank.
/// </summary>
public sealed partial class MlaAttention
{
    /// <summary>
    /// qcat[B, H, R+Dr] = [q̃_h | q_pe_h] per (b, h), from q[B, H*(Dn+Dr)] (roped) and wkvb [H*(Dn+Dv), R]:
    /// q̃_h [B, R] = q_nope_h [B, Dn] · W_UK_h [Dn, R].
    /// </summary>
    public static void AbsorbQueries(Span<float> qcat, ReadOnlySpan<float> q, ReadOnlySpan<float> wkvb, int B, in MlaDims m)
    {
        int H = m.H, RD = m.RD;
        qcat[..(B * H * RD)].Clear();
        for (int h = 0; h < H; h++)
        {
            SmallGemm.MultiplyAddNN(qcat[(h * RD)..], H * RD, q[(h * m.QkHead)..], m.HQ, wkvb[(h * m.KvHead * m.R)..], m.R, B, m.R, m.Dn);
            for (int b = 0; b < B; b++)
            {
                q.Slice(b * m.HQ + h * m.QkHead + m.Dn, m.Dr).CopyTo(qcat.Slice((b * H + h) * RD + m.R, m.Dr));
            }
        }
    }

    /// <summary>
    /// One sequence: score_hj = [q̃_h | q_pe_h] · [c_j | k_pe_j] over its first len cached tokens of this layer
    /// (one dot of R + Dr per head and token, each cache row read once for all heads), softmax, then
    /// ctx[H, R] = Σ_j p_hj c_j. qcat is the sequence's [H, R+Dr]; scores and probs are scratch [H, len].
    /// </summary>
    public static void AttendLatents(Span<float> ctx, Span<float> scores, Span<float> probs, ReadOnlySpan<float> qcat,
        KvBlockPool pool, SequenceCache seq, int layer, int len, in MlaDims m, float scale)
    {
        int H = m.H, R = m.R, RD = m.RD, bt = pool.BlockTokens;
        var s = scores[..(H * len)];
        var p = probs[..(H * len)];
        for (int start = 0, blk = 0; start < len; start += bt, blk++)
        {
            int cnt = Math.Min(bt, len - start);
            // scores [H, cnt] of this block = qcat [H, RD] · rows [cnt, RD]ᵀ
            SmallGemm.MultiplyNT(s[start..], len, qcat, RD, pool.LayerRows(seq.Blocks[blk], layer), RD, H, cnt, RD);
        }

        Softmax.Forward(p, s, H, len, scale, causal: false);
        ctx[..(H * R)].Clear();
        for (int start = 0, blk = 0; start < len; start += bt, blk++)
        {
            int cnt = Math.Min(bt, len - start);
            // ctx [H, R] += p [H, cnt] · c [cnt, R] of this block
            SmallGemm.MultiplyAddNN(ctx, R, p[start..], len, pool.LayerRows(seq.Blocks[blk], layer), RD, H, R, cnt);
        }
    }

    /// <summary>attnOut[B, H*Dv]: o_h [B, Dv] = ctx_h [B, R] · W_UV_hᵀ, from ctx[B, H, R] and wkvb [H*(Dn+Dv), R].</summary>
    public static void AbsorbedOutput(Span<float> attnOut, ReadOnlySpan<float> ctx, ReadOnlySpan<float> wkvb, int B, in MlaDims m)
    {
        for (int h = 0; h < m.H; h++)
        {
            SmallGemm.MultiplyNT(attnOut[(h * m.Dv)..], m.HDv, ctx[(h * m.R)..], m.H * m.R, wkvb[((h * m.KvHead + m.Dn) * m.R)..], m.R,
                B, m.Dv, m.R);
        }
    }
}
