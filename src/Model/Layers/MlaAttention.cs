using K2RL.Kernels;

namespace K2RL.Model.Layers;

/// <summary>
/// Multi-head latent attention (SPEC §1 MLA). An instance is the plain path's training layer, with its saved
/// activations for batches of B sequences × T tokens (items 1–5):
///   q, c, k_pe as <see cref="MlaProjection"/> (shared with prefill and decode)  → [N, H, Dn+Dr], [N, R], [N, Dr]
///   [k_nope | v] = c Wkvbᵀ                                  → [N, H, Dn+Dv]
///   per (b, h): S = q_nope k_noped ᵀ + q_pe k_peᵀ [T, T]; P = causal softmax(S · (Dn+Dr)^-1/2); o = P v
///   out = o Woᵀ                                             → [N, D]
/// Letters: B batch, T sequence, N = B·T, D hidden, H heads, Dn/Dr/Dv head dims, Rq q_lora_rank, R kv_lora_rank.
/// Parameter gradients accumulate (+=); activation gradients are assigned (=). The static pieces serve
/// <see cref="Inference.DecodeModel"/>: <see cref="AttendPlain"/> is prefill's attention too, and
/// MlaAttention.Absorbed.cs holds decode's weight-absorbed path (item 6) over the compressed cache.
/// </summary>
public sealed partial class MlaAttention
{
    private readonly MlaDims m;
    private readonly int B, T, N;
    private readonly float scale;
    private readonly float[] ropeCos, ropeSin;   // [maxPos, Dr/2]
    private readonly int[] positions;            // [N] = n mod T

    // ---- saved activations
    private readonly MlaProjection proj;         // q, c, k_pe and their intermediates for N tokens
    private readonly float[] kvb;                // [N, H*(Dn+Dv)]
    private readonly float[] probs;              // [B, H, T, T] slots, each holding the packed causal row blocks
    private readonly float[] attnOut;            // [N, H*Dv]
    private readonly float[] maxBH;              // [B, H] max scaled logit per sequence and head

    // ---- backward scratch
    private readonly float[] dAttnOut;           // [N, H*Dv]
    private readonly float[] dQ;                 // [N, H*(Dn+Dr)]
    private readonly float[] dKvb;               // [N, H*(Dn+Dv)]
    private readonly float[] dKpeHeads;          // [H, N, Dr] per-head k_pe gradients, summed in head order
    private readonly float[] dKpe;               // [N, Dr]
    private readonly float[] dCN, dCRaw;         // [N, R]
    private readonly float[] dQaN, dQa;          // [N, Rq]
    private readonly float[][] workS, workDP;    // per worker [T, T]

    private float[] parameters = [];
    private LayerSlots slots = null!;
    private readonly Action<int, int> forwardHead, backwardHead;

    private readonly StepProfile profile;

    public MlaAttention(ModelConfig config, int batch, int seq, float[] ropeCos, float[] ropeSin, int[] positions,
        StepProfile profile)
    {
        this.profile = profile;
        m = config.Mla;
        B = batch;
        T = seq;
        N = batch * seq;
        scale = config.SoftmaxScale;
        this.ropeCos = ropeCos;
        this.ropeSin = ropeSin;
        this.positions = positions;

        proj = new MlaProjection(config, N, ropeCos, ropeSin);
        kvb = new float[N * m.HKV];
        probs = new float[(long)B * m.H * T * T <= int.MaxValue ? B * m.H * T * T : throw new ArgumentException($"attention probabilities [B={B}, H={m.H}, T={T}, T] exceed one array")];
        attnOut = new float[N * m.HDv];
        maxBH = new float[B * m.H];
        dAttnOut = new float[N * m.HDv];
        dQ = new float[N * m.HQ];
        dKvb = new float[N * m.HKV];
        dKpeHeads = new float[m.H * N * m.Dr];
        dKpe = new float[N * m.Dr];
        dCN = new float[N * m.R];
        dCRaw = new float[N * m.R];
        dQaN = new float[N * m.Rq];
        dQa = new float[N * m.Rq];
        workS = ForkJoinPool.Shared.PerWorker(T * T);
        workDP = ForkJoinPool.Shared.PerWorker(T * T);

        forwardHead = ForwardHead;
        backwardHead = BackwardHead;
    }

    /// <summary>Per sequence and head, the largest scaled pre-softmax logit of the last forward [B, H].</summary>
    public ReadOnlySpan<float> MaxLogitsPerSequence => maxBH;

    /// <summary>output[N, D] = MLA(x) (assigned); x [N, D] is the input-normed hidden state, kept until backward.</summary>
    public void Forward(Span<float> output, float[] x, float[] parameters, LayerSlots slots)
    {
        this.parameters = parameters;
        this.slots = slots;
        long t0 = StepProfile.Now;
        proj.Forward(x, positions, N, parameters, slots, Projector.Packed);
        Linear.Forward(kvb, proj.CN, P(slots.KvB, m.HKV * m.R), N, m.R, m.HKV);
        t0 = profile.Lap(ModelPhase.AttentionProjections, t0);
        ForkJoinPool.Shared.For(B * m.H, forwardHead);
        t0 = profile.Lap(ModelPhase.AttentionCore, t0);
        Linear.Forward(output, attnOut, P(slots.O, m.D * m.HDv), N, m.HDv, m.D);
        profile.Lap(ModelPhase.AttentionProjections, t0);
    }

    /// <summary>Max scaled logit per head over the batch, written to maxPerHead[H].</summary>
    public void ReduceMaxLogits(Span<float> maxPerHead) => ReduceMaxLogits(maxPerHead, maxBH, B, m.H);

    /// <summary>maxPerHead[h] = max over b of maxBH[b, h] (training's batch, prefill's sequences).</summary>
    internal static void ReduceMaxLogits(Span<float> maxPerHead, ReadOnlySpan<float> maxBH, int B, int H)
    {
        for (int h = 0; h < H; h++)
        {
            float max = float.NegativeInfinity;
            for (int b = 0; b < B; b++)
            {
                max = Math.Max(max, maxBH[b * H + h]);
            }

            maxPerHead[h] = max;
        }
    }

    /// <summary>dX[N, D] (assigned) and the attention weights' gradients (+=) from dOut[N, D].</summary>
    public void Backward(Span<float> dX, float[] gradients, ReadOnlySpan<float> dOut, ReadOnlySpan<float> x)
    {
        int D = m.D, H = m.H, Dr = m.Dr, R = m.R, Rq = m.Rq, HQ = m.HQ, HKV = m.HKV, RD = m.RD;
        long t0 = StepProfile.Now;
        Linear.Backward(dAttnOut, G(gradients, slots.O, D * m.HDv), dOut, attnOut, P(slots.O, D * m.HDv), N, m.HDv, D);
        t0 = profile.Lap(ModelPhase.AttentionProjections, t0);
        ForkJoinPool.Shared.For(B * H, backwardHead);

        // the shared k_pe collects every head's gradient, in head order
        dKpeHeads.AsSpan(0, N * Dr).CopyTo(dKpe);
        for (int h = 1; h < H; h++)
        {
            var src = dKpeHeads.AsSpan(h * N * Dr, N * Dr);
            for (int i = 0; i < src.Length; i++)
            {
                dKpe[i] += src[i];
            }
        }

        t0 = profile.Lap(ModelPhase.AttentionCore, t0);
        // RoPE is a rotation: its backward rotates the gradient back
        Rope.Apply(dQ, positions, ropeCos, ropeSin, N, HQ, H, m.QkHead, m.Dn, Dr, inverse: true);
        Rope.Apply(dKpe, positions, ropeCos, ropeSin, N, Dr, 1, Dr, 0, Dr, inverse: true);

        Linear.Backward(dCN, G(gradients, slots.KvB, HKV * R), dKvb, proj.CN, P(slots.KvB, HKV * R), N, R, HKV);
        RmsNorm.Backward(dCRaw, G(gradients, slots.KvNorm, R), dCN, proj.CRaw, P(slots.KvNorm, R), proj.RstdKv, N, R);
        // [dc | dk_pe] back through kv_a_proj as one GEMM pair
        var dKva = proj.KvA;
        for (int r = 0; r < N; r++)
        {
            dCRaw.AsSpan(r * R, R).CopyTo(dKva.AsSpan(r * RD, R));
            dKpe.AsSpan(r * Dr, Dr).CopyTo(dKva.AsSpan(r * RD + R, Dr));
        }

        Linear.Backward(dX, G(gradients, slots.KvA, RD * D), dKva, x, P(slots.KvA, RD * D), N, D, RD);
        if (m.HasQLora)
        {
            Linear.Backward(dQaN, G(gradients, slots.QB, HQ * Rq), dQ, proj.QaN, P(slots.QB, HQ * Rq), N, Rq, HQ);
            RmsNorm.Backward(dQa, G(gradients, slots.QANorm, Rq), dQaN, proj.Qa, P(slots.QANorm, Rq), proj.RstdQa, N, Rq);
            Linear.Backward(dX, G(gradients, slots.QA, Rq * D), dQa, x, P(slots.QA, Rq * D), N, D, Rq, accumulateInput: true);
        }
        else
        {
            Linear.Backward(dX, G(gradients, slots.Q, HQ * D), dQ, x, P(slots.Q, HQ * D), N, D, HQ, accumulateInput: true);
        }

        profile.Lap(ModelPhase.AttentionProjections, t0);
    }

    /// <summary>
    /// Causal attention in row blocks of <see cref="QueryBlock"/> queries: block [r0, r1) only needs keys
    /// [0, r1), so the upper triangle is never computed. Block r's probabilities are stored packed as
    /// [r1 − r0, r1] at <see cref="PackedOffset"/> within the item's [T, T] slot.
    /// </summary>
    private const int QueryBlock = 64;

    private void ForwardHead(int item, int worker)
    {
        int H = m.H, b = item / H, h = item % H, row0 = b * T;
        var q = proj.Q.AsSpan(row0 * m.HQ + h * m.QkHead);
        var kv = kvb.AsSpan(row0 * m.HKV + h * m.KvHead);
        var kpe = proj.Kpe.AsSpan(row0 * m.Dr);
        var o = attnOut.AsSpan(row0 * m.HDv + h * m.Dv);
        var pItem = probs.AsSpan(item * T * T, T * T);
        float max = float.NegativeInfinity;
        for (int r0 = 0; r0 < T; r0 += QueryBlock)
        {
            int rows = Math.Min(QueryBlock, T - r0), cols = r0 + rows;
            max = Math.Max(max, AttendPlain(o[(r0 * m.HDv)..], pItem.Slice(PackedOffset(r0), rows * cols),
                workS[worker].AsSpan(0, rows * cols), q[(r0 * m.HQ)..], kv, kpe, rows, cols, r0, m, scale));
        }

        maxBH[item] = max;
    }

    /// <summary>
    /// One head's plain causal attention (training and prefill) for <paramref name="rows"/> queries at positions
    /// first.. over the keys at [0, cols), rows of q [rows, H*(Dn+Dr)], kv [cols, H*(Dn+Dv)], o [rows, H*Dv] all
    /// starting at this head and k_pe [cols, Dr] shared:
    ///   S[rows, cols] = q_nope k_nopeᵀ + q_pe k_peᵀ; P = causal softmax(S · scale) into p; o = P v.
    /// Returns the largest scaled logit; s is scratch [rows, cols].
    /// </summary>
    internal static float AttendPlain(Span<float> o, Span<float> p, Span<float> s, ReadOnlySpan<float> q, ReadOnlySpan<float> kv,
        ReadOnlySpan<float> kpe, int rows, int cols, int first, in MlaDims m, float scale)
    {
        int HQ = m.HQ, HKV = m.HKV;
        Gemm.Multiply(GemmOp.NT, s, cols, q, HQ, kv, HKV, rows, cols, m.Dn, false, maxThreads: 1);
        Gemm.Multiply(GemmOp.NT, s, cols, q[m.Dn..], HQ, kpe, m.Dr, rows, cols, m.Dr, true, maxThreads: 1);
        float max = Softmax.Forward(p, s, rows, cols, scale, causal: true, causalOffset: first);
        Gemm.Multiply(GemmOp.NN, o, m.HDv, p, cols, kv[m.Dn..], HKV, rows, m.Dv, cols, false, maxThreads: 1);
        return max;
    }

    private void BackwardHead(int item, int worker)
    {
        int H = m.H, Dn = m.Dn, Dr = m.Dr, Dv = m.Dv, HQ = m.HQ, HKV = m.HKV;
        int b = item / H, h = item % H, row0 = b * T;
        var pItem = probs.AsSpan(item * T * T, T * T);
        var dOAll = dAttnOut.AsSpan(row0 * H * Dv + h * Dv);
        var qRows = proj.Q.AsSpan(row0 * HQ + h * m.QkHead);
        var kvRows = kvb.AsSpan(row0 * HKV + h * m.KvHead);
        var kpeRows = proj.Kpe.AsSpan(row0 * Dr);
        var dQRows = dQ.AsSpan(row0 * HQ + h * m.QkHead);
        var dKvRows = dKvb.AsSpan(row0 * HKV + h * m.KvHead);
        var dKpeRows = dKpeHeads.AsSpan(h * N * Dr + row0 * Dr);
        // the last row block sees every key: it assigns dk, dv; earlier blocks accumulate onto a prefix
        int last = (T - 1) / QueryBlock * QueryBlock;
        for (int r0 = last; r0 >= 0; r0 -= QueryBlock)
        {
            int rows = Math.Min(QueryBlock, T - r0), cols = r0 + rows;
            bool acc = r0 != last;
            var dP = workDP[worker].AsSpan(0, rows * cols);
            var dS = workS[worker].AsSpan(0, rows * cols);
            var p = pItem.Slice(PackedOffset(r0), rows * cols);
            var dO = dOAll[(r0 * H * Dv)..];
            // dP = dO v[0:cols]ᵀ ; dv[0:cols] (+)= Pᵀ dO
            Gemm.Multiply(GemmOp.NT, dP, cols, dO, H * Dv, kvRows[Dn..], HKV, rows, cols, Dv, false, maxThreads: 1);
            Gemm.Multiply(GemmOp.TN, dKvRows[Dn..], HKV, p, cols, dO, H * Dv, cols, Dv, rows, acc, maxThreads: 1);
            Softmax.Backward(dS, dP, p, rows, cols, scale);
            // dq_nope = dS k_nope ; dq_pe = dS k_pe ; dk_nope (+)= dSᵀ q_nope ; dk_pe(h) (+)= dSᵀ q_pe
            Gemm.Multiply(GemmOp.NN, dQRows[(r0 * HQ)..], HQ, dS, cols, kvRows, HKV, rows, Dn, cols, false, maxThreads: 1);
            Gemm.Multiply(GemmOp.NN, dQRows[(r0 * HQ + Dn)..], HQ, dS, cols, kpeRows, Dr, rows, Dr, cols, false, maxThreads: 1);
            Gemm.Multiply(GemmOp.TN, dKvRows, HKV, dS, cols, qRows[(r0 * HQ)..], HQ, cols, Dn, rows, acc, maxThreads: 1);
            Gemm.Multiply(GemmOp.TN, dKpeRows, Dr, dS, cols, qRows[(r0 * HQ + Dn)..], HQ, cols, Dr, rows, acc, maxThreads: 1);
        }
    }

    /// <summary>Start of row block r0's packed [rows, r0 + rows] probabilities within one (b, h) item.</summary>
    private static int PackedOffset(int r0)
    {
        // blocks j < r0/QB hold QB × (j+1)·QB each: QB² · k(k+1)/2 with k = r0/QB
        int k = r0 / QueryBlock;
        return QueryBlock * QueryBlock * k * (k + 1) / 2;
    }

    private Span<float> P(int offset, int length) => parameters.AsSpan(offset, length);

    private static Span<float> G(float[] gradients, int offset, int length) => gradients.AsSpan(offset, length);
}
