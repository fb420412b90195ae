using K2RL.Kernels;

namespace K2RL.Model.Layers;

/// <summary>
/// Multi-head latent attention, plain path (training and prefill), for one layer, with its saved activations
/// for batches of B sequences × T tokens (SPEC §1 MLA items 1–5):
///   cq = RMSNorm(x Wqaᵀ); q = cq Wqbᵀ (or q = x Wqᵀ)        → [N, H, Dn+Dr], RoPE on the Dr part
///   [c | k_pe] = x Wkvaᵀ; c = RMSNorm(c); RoPE on k_pe (one head, shared)
///   [k_nope | v] = c Wkvbᵀ                                  → [N, H, Dn+Dv]
///   per (b, h): S = q_nope k_noped ᵀ + q_pe k_peᵀ [T, T]; P = causal softmax(S · (Dn+Dr)^-1/2); o = P v
///   out = o Woᵀ                                             → [N, D]
/// Letters: B batch, T sequence, N = B·T, D hidden, H heads, Dn/Dr/Dv head dims, Rq q_lora_rank, R kv_lora_rank.
/// Parameter gradients accumulate (+=); activation gradients are assigned (=).
/// </summary>
public sealed class MlaAttention
{
    private readonly int B, T, N, D, H, Dn, Dr, Dv, R, Rq, HQ, HKV;
    private readonly bool hasQLora;
    private readonly float eps, scale;
    private readonly float[] ropeCos, ropeSin;   // [maxPos, Dr/2]
    private readonly int[] positions;            // [N] = n mod T

    // ---- saved activations
    private readonly float[] qa, qaN, rstdQa;    // [N, Rq], [N, Rq], [N]
    private readonly float[] q;                  // [N, H*(Dn+Dr)] after RoPE
    private readonly float[] cRaw, cN, rstdKv;   // [N, R], [N, R], [N]
    private readonly float[] kpe;                // [N, Dr] after RoPE
    private readonly float[] kva;                // [N, R+Dr] kv_a_proj output (split into cRaw | kpe); reused for its gradient
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
        B = batch;
        T = seq;
        N = batch * seq;
        D = config.HiddenSize;
        H = config.NumAttentionHeads;
        Dn = config.QkNopeHeadDim;
        Dr = config.QkRopeHeadDim;
        Dv = config.VHeadDim;
        R = config.KvLoraRank;
        hasQLora = config.QLoraRank is not null;
        Rq = config.QLoraRank ?? 0;
        HQ = H * (Dn + Dr);
        HKV = H * (Dn + Dv);
        eps = config.RmsNormEps;
        scale = config.SoftmaxScale;
        this.ropeCos = ropeCos;
        this.ropeSin = ropeSin;
        this.positions = positions;

        qa = new float[N * Rq];
        qaN = new float[N * Rq];
        rstdQa = new float[hasQLora ? N : 0];
        q = new float[N * HQ];
        cRaw = new float[N * R];
        cN = new float[N * R];
        rstdKv = new float[N];
        kpe = new float[N * Dr];
        kva = new float[N * (R + Dr)];
        kvb = new float[N * HKV];
        probs = new float[(long)B * H * T * T <= int.MaxValue ? B * H * T * T : throw new ArgumentException($"attention probabilities [B={B}, H={H}, T={T}, T] exceed one array")];
        attnOut = new float[N * H * Dv];
        maxBH = new float[B * H];
        dAttnOut = new float[N * H * Dv];
        dQ = new float[N * HQ];
        dKvb = new float[N * HKV];
        dKpeHeads = new float[H * N * Dr];
        dKpe = new float[N * Dr];
        dCN = new float[N * R];
        dCRaw = new float[N * R];
        dQaN = new float[N * Rq];
        dQa = new float[N * Rq];
        workS = ForkJoinPool.Shared.PerWorker(T * T);
        workDP = ForkJoinPool.Shared.PerWorker(T * T);

        forwardHead = ForwardHead;
        backwardHead = BackwardHead;
    }

    /// <summary>Per sequence and head, the largest scaled pre-softmax logit of the last forward [B, H].</summary>
    public ReadOnlySpan<float> MaxLogitsPerSequence => maxBH;

    /// <summary>output[N, D] = MLA(x) (assigned); x [N, D] is the input-normed hidden state, kept until backward.</summary>
    public void Forward(Span<float> output, ReadOnlySpan<float> x, float[] parameters, LayerSlots slots)
    {
        this.parameters = parameters;
        this.slots = slots;
        long t0 = StepProfile.Now;
        if (hasQLora)
        {
            Linear.Forward(qa, x, P(slots.QA, Rq * D), N, D, Rq);
            RmsNorm.Forward(qaN, rstdQa, qa, P(slots.QANorm, Rq), N, Rq, eps);
            Linear.Forward(q, qaN, P(slots.QB, HQ * Rq), N, Rq, HQ);
        }
        else
        {
            Linear.Forward(q, x, P(slots.Q, HQ * D), N, D, HQ);
        }

        Rope.Apply(q, positions, ropeCos, ropeSin, N, HQ, H, Dn + Dr, Dn, Dr);
        // one GEMM for [c | k_pe], then split
        Linear.Forward(kva, x, P(slots.KvA, (R + Dr) * D), N, D, R + Dr);
        for (int r = 0; r < N; r++)
        {
            kva.AsSpan(r * (R + Dr), R).CopyTo(cRaw.AsSpan(r * R, R));
            kva.AsSpan(r * (R + Dr) + R, Dr).CopyTo(kpe.AsSpan(r * Dr, Dr));
        }

        Rope.Apply(kpe, positions, ropeCos, ropeSin, N, Dr, 1, Dr, 0, Dr);
        RmsNorm.Forward(cN, rstdKv, cRaw, P(slots.KvNorm, R), N, R, eps);
        Linear.Forward(kvb, cN, P(slots.KvB, HKV * R), N, R, HKV);

        t0 = profile.Lap(ModelPhase.AttentionProjections, t0);
        ForkJoinPool.Shared.For(B * H, forwardHead);
        t0 = profile.Lap(ModelPhase.AttentionCore, t0);
        Linear.Forward(output, attnOut, P(slots.O, D * H * Dv), N, H * Dv, D);
        profile.Lap(ModelPhase.AttentionProjections, t0);
    }

    /// <summary>Max scaled logit per head over the batch, written to maxPerHead[H].</summary>
    public void ReduceMaxLogits(Span<float> maxPerHead)
    {
        for (int h = 0; h < H; h++)
        {
            float m = float.NegativeInfinity;
            for (int b = 0; b < B; b++)
            {
                m = Math.Max(m, maxBH[b * H + h]);
            }

            maxPerHead[h] = m;
        }
    }

    /// <summary>dX[N, D] (assigned) and the attention weights' gradients (+=) from dOut[N, D].</summary>
    public void Backward(Span<float> dX, float[] gradients, ReadOnlySpan<float> dOut, ReadOnlySpan<float> x)
    {
        long t0 = StepProfile.Now;
        Linear.Backward(dAttnOut, G(gradients, slots.O, D * H * Dv), dOut, attnOut, P(slots.O, D * H * Dv), N, H * Dv, D);
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
        Rope.Apply(dQ, positions, ropeCos, ropeSin, N, HQ, H, Dn + Dr, Dn, Dr, inverse: true);
        Rope.Apply(dKpe, positions, ropeCos, ropeSin, N, Dr, 1, Dr, 0, Dr, inverse: true);

        Linear.Backward(dCN, G(gradients, slots.KvB, HKV * R), dKvb, cN, P(slots.KvB, HKV * R), N, R, HKV);
        RmsNorm.Backward(dCRaw, G(gradients, slots.KvNorm, R), dCN, cRaw, P(slots.KvNorm, R), rstdKv, N, R);
        // [dc | dk_pe] back through kv_a_proj as one GEMM pair
        for (int r = 0; r < N; r++)
        {
            dCRaw.AsSpan(r * R, R).CopyTo(kva.AsSpan(r * (R + Dr), R));
            dKpe.AsSpan(r * Dr, Dr).CopyTo(kva.AsSpan(r * (R + Dr) + R, Dr));
        }

        Linear.Backward(dX, G(gradients, slots.KvA, (R + Dr) * D), kva, x, P(slots.KvA, (R + Dr) * D), N, D, R + Dr);
        if (hasQLora)
        {
            Linear.Backward(dQaN, G(gradients, slots.QB, HQ * Rq), dQ, qaN, P(slots.QB, HQ * Rq), N, Rq, HQ);
            RmsNorm.Backward(dQa, G(gradients, slots.QANorm, Rq), dQaN, qa, P(slots.QANorm, Rq), rstdQa, N, Rq);
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
        int b = item / H, h = item % H, row0 = b * T;
        var qRows = q.AsSpan(row0 * HQ + h * (Dn + Dr));
        var kvRows = kvb.AsSpan(row0 * HKV + h * (Dn + Dv));
        var kpeRows = kpe.AsSpan(row0 * Dr);
        var pItem = probs.AsSpan(item * T * T, T * T);
        float max = float.NegativeInfinity;
        for (int r0 = 0; r0 < T; r0 += QueryBlock)
        {
            int rows = Math.Min(QueryBlock, T - r0), cols = r0 + rows;
            var s = workS[worker].AsSpan(0, rows * cols);
            var p = pItem.Slice(PackedOffset(r0), rows * cols);
            // S[rows, cols] = q_nope k_nopeᵀ + q_pe k_peᵀ
            Gemm.Multiply(GemmOp.NT, s, cols, qRows[(r0 * HQ)..], HQ, kvRows, HKV, rows, cols, Dn, false, maxThreads: 1);
            Gemm.Multiply(GemmOp.NT, s, cols, qRows[(r0 * HQ + Dn)..], HQ, kpeRows, Dr, rows, cols, Dr, true, maxThreads: 1);
            max = Math.Max(max, Softmax.Forward(p, s, rows, cols, scale, causal: true, causalOffset: r0));
            // o[rows, Dv] = P v[0:cols]
            Gemm.Multiply(GemmOp.NN, attnOut.AsSpan((row0 + r0) * H * Dv + h * Dv), H * Dv, p, cols, kvRows[Dn..], HKV,
                rows, Dv, cols, false, maxThreads: 1);
        }

        maxBH[item] = max;
    }

    private void BackwardHead(int item, int worker)
    {
        int b = item / H, h = item % H, row0 = b * T;
        var pItem = probs.AsSpan(item * T * T, T * T);
        var dOAll = dAttnOut.AsSpan(row0 * H * Dv + h * Dv);
        var qRows = q.AsSpan(row0 * HQ + h * (Dn + Dr));
        var kvRows = kvb.AsSpan(row0 * HKV + h * (Dn + Dv));
        var kpeRows = kpe.AsSpan(row0 * Dr);
        var dQRows = dQ.AsSpan(row0 * HQ + h * (Dn + Dr));
        var dKvRows = dKvb.AsSpan(row0 * HKV + h * (Dn + Dv));
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
