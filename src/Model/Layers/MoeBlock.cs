using System.Numerics.Tensors;
using K2RL.Kernels;

namespace K2RL.Model.Layers;

/// <summary>
/// The MoE feed-forward of one layer (SPEC §1 MoE FFN) with its saved activations for up to
/// <see cref="Capacity"/> tokens. Routing: s = sigmoid(x Wgᵀ) in fp32; selection on s + bias, group-limited
/// when n_group &gt; 1 (group score = sum of its top-2); mixing weights from the unbiased s, normalized when
/// norm_topk_prob, times routed_scaling_factor. Tokens go to experts in grouped batches: the (token, slot)
/// pairs are sorted by expert (stable, by token), gathered into one contiguous block per expert, run through
/// one GEMM per projection per expert, and combined back per token in slot order (deterministic). The file reads
/// in call order: Forward (Route, the experts by one of <see cref="ForwardExpert"/>'s three product paths, the
/// shared expert, Combine), then Backward (MixBackward, BackwardExpert, Scatter, the router).
/// Letters: N tokens, D hidden, E experts, K experts per token, F expert hidden, Fs shared hidden, G groups.
/// Parameter gradients accumulate (+=); activation gradients are assigned (=).
/// </summary>
public sealed class MoeBlock
{
    private readonly int D, E, K, F, Fs, G, topkGroup;
    private readonly bool normTopk;
    private readonly bool inference;     // not trainable
    private readonly bool fewRows;       // inference for decode steps: every expert takes the few-row product
    private readonly float scaling;

    // ---- saved activations
    private readonly float[] scores;     // [N, E] sigmoid router scores (unbiased)
    private readonly float[] choice;     // [N, E] biased, group-masked selection scores
    private readonly int[] selected;     // [N, K] chosen experts, best first
    private readonly float[] mix;        // [N, K] mixing weights
    private readonly float[] denom;      // [N] sum of chosen unbiased scores (+1e-20) when normalizing
    private readonly int[] counts;       // [E] tokens per expert
    private readonly int[] offsets;      // [E + 1] start of each expert's block in sorted order
    private readonly int[] fill;         // [E] scratch
    private readonly int[] posOf;        // [N, K] sorted position of (token, slot)
    private readonly int[] tokenOf;      // [N*K] token of each sorted position
    private readonly float[] xe;         // [N*K, D] gathered expert inputs
    private readonly float[] ge, ue, he; // [N*K, F] expert gate / up pre-activations and hidden
    private readonly float[] ye;         // [N*K, D] expert outputs (unweighted)
    private readonly float[] gs, us, hs; // [N, Fs] shared expert
    private readonly float[] guE;        // [N*K, 2F] fused gate|up scratch (per expert rows)
    private readonly float[] guS;        // [N, 2Fs] fused gate|up scratch (shared expert)
    private readonly float[] groupScore; // [G] scratch (single-threaded routing)

    // ---- backward scratch (shared by all layers would be possible; kept per block for simplicity)
    private readonly float[] dMix;       // [N, K]
    private readonly float[] dRouter;    // [N, E] d loss / d router logits
    private readonly float[] dYe, dXe;   // [N*K, D]
    private readonly float[] dHe, dGe, dUe; // [N*K, F]
    private readonly float[] dHs, dGs, dUs; // [N, Fs]

    // ---- arguments of the call in flight (read by the per-expert bodies)
    private float[] parameters = [];
    private ushort[] weights16 = [];     // inference: the routed experts' bf16 rows (SmallGemm.PackBf16Row), or empty
    private float[] gradients = [];
    private LayerSlots slots = null!;
    private float[] xIn = [], outBuf = [], dOutBuf = [], dXBuf = [];
    private int tokens;
    private readonly Action<int, int> forwardExpert, forwardInference, backwardExpert, combine, mixBackward, scatter;

    private readonly StepProfile profile;

    // ---- sequence-wise balance loss (only when SequenceBalanceAlpha > 0)
    private float[] dBalance = [];       // [N, E] d balance loss / d scores of the last forward
    private readonly double[] balanceF;  // [E] scratch
    private bool balanceActive;

    /// <param name="fewRows">
    /// An inference block for decode steps: every routed expert runs the few-row product (<see cref="SmallGemm"/>)
    /// whatever its row count; an inference block without it runs the packed GEMM. Either way a token's output
    /// has the same bits however many other tokens share its expert, so a request's log-probabilities do not
    /// depend on the rest of its batch.
    /// </param>
    public MoeBlock(ModelConfig config, int capacity, bool trainable, StepProfile profile, bool fewRows = false)
    {
        if (trainable && fewRows)
        {
            throw new ArgumentException("the few-row expert products are for inference blocks only", nameof(fewRows));
        }

        this.profile = profile;
        D = config.HiddenSize;
        E = config.NRoutedExperts;
        K = config.NumExpertsPerTok;
        F = config.MoeIntermediateSize;
        Fs = F * config.NSharedExperts;
        G = config.NGroup;
        topkGroup = config.TopkGroup;
        normTopk = config.NormTopkProb;
        scaling = config.RoutedScalingFactor;
        Capacity = capacity;
        inference = !trainable;
        this.fewRows = fewRows;
        int N = capacity, NK = capacity * K;
        scores = new float[N * E];
        choice = new float[N * E];
        selected = new int[NK];
        mix = new float[NK];
        denom = new float[N];
        counts = new int[E];
        offsets = new int[E + 1];
        fill = new int[E];
        posOf = new int[NK];
        tokenOf = new int[NK];
        xe = new float[NK * D];
        ge = new float[NK * F];
        ue = new float[NK * F];
        he = new float[NK * F];
        ye = new float[NK * D];
        gs = new float[N * Fs];
        us = new float[N * Fs];
        hs = new float[N * Fs];
        groupScore = new float[G];
        guE = new float[NK * 2 * F];
        guS = new float[N * 2 * Fs];
        if (trainable)
        {
            dMix = new float[NK];
            dRouter = new float[N * E];
            dYe = new float[NK * D];
            dXe = new float[NK * D];
            dHe = new float[NK * F];
            dGe = new float[NK * F];
            dUe = new float[NK * F];
            dHs = new float[N * Fs];
            dGs = new float[N * Fs];
            dUs = new float[N * Fs];
        }
        else
        {
            dMix = dRouter = dYe = dXe = dHe = dGe = dUe = dHs = dGs = dUs = [];
        }

        balanceF = new double[E];
        forwardExpert = ForwardExpert;
        forwardInference = ForwardInference;
        backwardExpert = BackwardExpert;
        combine = Combine;
        mixBackward = MixBackward;
        scatter = Scatter;
    }

    public int Capacity { get; }

    /// <summary>Tokens routed to each expert in the last forward [E].</summary>
    public ReadOnlySpan<int> Counts => counts;

    /// <summary>Chosen experts of the last forward [N, K].</summary>
    public ReadOnlySpan<int> Selected => selected;

    /// <summary>
    /// Tokens of the last forward given a replayed routing whose expert set differs from the one this block's own
    /// scores pick (a routing flip between the engine that recorded it and this forward).
    /// </summary>
    public int ReplayFlips { get; private set; }

    /// <summary>
    /// Computes the sequence-wise balance loss of the last forward's routing over <paramref name="B"/> sequences
    /// of <paramref name="T"/> tokens, each weighted by <paramref name="weight"/> (the caller's alpha over B),
    /// and arms the next <see cref="Backward"/> to add its gradient to the router's. Returns the summed loss.
    /// Call after <see cref="Forward"/>; a forward without this call disarms it.
    /// </summary>
    public float SequenceBalanceLoss(int B, int T, float weight)
    {
        if (inference)
        {
            throw new InvalidOperationException("the sequence balance loss needs a trainable MoE block");
        }

        int N = B * T;
        if (N != tokens)
        {
            throw new ArgumentException($"B*T = {B}*{T} does not match the {tokens} tokens of the last forward");
        }

        if (dBalance.Length < Capacity * E)
        {
            dBalance = new float[Capacity * E];
        }

        double loss = 0;
        for (int b = 0; b < B; b++)
        {
            loss += SequenceBalance.Loss(scores.AsSpan(b * T * E, T * E), selected.AsSpan(b * T * K, T * K), T, E, K, weight,
                dBalance.AsSpan(b * T * E, T * E), balanceF);
        }

        balanceActive = true;
        return (float)loss;
    }

    /// <summary>
    /// output[N, D] = Σ_k mix[n,k] Expert_k(x[n]) + Shared(x[n]) (assigned). x is the post-attention-normed
    /// input and must stay unchanged until <see cref="Backward"/>. An inference block may be given
    /// <paramref name="experts16"/>, the routed experts' rows packed as bf16 at the parameters' offsets, for its
    /// few-row products; the parameters must then hold the same (rounded) values.
    /// <para>Routing replay: when <paramref name="replay"/> is given ([N, K]), a token whose row starts with an
    /// expert id ≥ 0 goes to those K experts (distinct ids in [0, E), in that order: the routing the rollout engine
    /// used when it sampled), mixed with this forward's own scores; a row starting with −1 routes as usual.</para>
    /// </summary>
    public void Forward(float[] output, float[] x, float[] parameters, LayerSlots slots, int N, ushort[]? experts16 = null,
        ReadOnlySpan<int> replay = default)
    {
        if (!replay.IsEmpty && replay.Length != N * K)
        {
            throw new ArgumentException($"a replayed routing holds N*K = {N * K} expert ids, got {replay.Length}", nameof(replay));
        }

        if (N > Capacity)
        {
            throw new ArgumentException($"MoE block holds {Capacity} tokens, asked for {N}", nameof(N));
        }

        if (experts16 is { Length: > 0 } && (!inference || experts16.Length < parameters.Length))
        {
            throw new ArgumentException("bf16 expert rows need an inference block and one value per parameter", nameof(experts16));
        }

        this.parameters = parameters;
        weights16 = experts16 ?? [];
        this.slots = slots;
        balanceActive = false;
        long t0 = StepProfile.Now;
        Route(x, N, replay);
        t0 = profile.Lap(ModelPhase.MoeRouting, t0);
        xIn = x;
        outBuf = output;
        tokens = N;
        if (inference)
        {
            // one parallel region for the shared expert (item 0, the largest, claimed first) and the routed
            // experts, each on one thread: no kernel-thread GEMM in between (the fork/join pool only; same bits)
            ForkJoinPool.Shared.For(E + 1, forwardInference);
            t0 = profile.Lap(ModelPhase.MoeExperts, t0);
        }
        else
        {
            ForkJoinPool.Shared.For(E, forwardExpert);   // gathers its own tokens, then three GEMMs
            t0 = profile.Lap(ModelPhase.MoeExperts, t0);
            SharedForward(output, x, N, threads: 0);
            t0 = profile.Lap(ModelPhase.SharedExpert, t0);
        }

        ForkJoinPool.Shared.For(TokenChunks, combine, parallel: N * K * D >= ParallelMinFloats);
        profile.Lap(ModelPhase.MoeRouting, t0);
        xIn = outBuf = dOutBuf = dXBuf = [];
        weights16 = [];
    }

    private void Route(float[] x, int N, ReadOnlySpan<int> replay)
    {
        var s = scores.AsSpan(0, N * E);
        Linear.Forward(s, x, P(slots.Router, E * D), N, D, E, threads: inference ? 1 : 0);
        var bias = P(slots.RouterBias, E);
        TensorPrimitives.Sigmoid(s, s);

        var ch = choice.AsSpan(0, N * E);
        for (int n = 0; n < N; n++)
        {
            TensorPrimitives.Add(s.Slice(n * E, E), bias, ch.Slice(n * E, E));

            if (G > 1)
            {
                MaskGroups(ch.Slice(n * E, E));
            }
        }

        TopK.Select(selected.AsSpan(0, N * K), ch, N, E, K);
        ReplayFlips = replay.IsEmpty ? 0 : Replay(replay, N);

        Array.Clear(counts);
        for (int n = 0; n < N; n++)
        {
            double sum = 0;
            for (int k = 0; k < K; k++)
            {
                int e = selected[n * K + k];
                sum += s[n * E + e];
                counts[e]++;
            }

            float dn = normTopk ? (float)(sum + 1e-20) : 1f;
            denom[n] = dn;
            for (int k = 0; k < K; k++)
            {
                mix[n * K + k] = normTopk ? scaling * (s[n * E + selected[n * K + k]] / dn) : scaling * s[n * E + selected[n * K + k]];
            }
        }

        offsets[0] = 0;
        for (int e = 0; e < E; e++)
        {
            offsets[e + 1] = offsets[e] + counts[e];
            fill[e] = 0;
        }

        for (int n = 0; n < N; n++)
        {
            for (int k = 0; k < K; k++)
            {
                int e = selected[n * K + k];
                int pos = offsets[e] + fill[e]++;
                posOf[n * K + k] = pos;
                tokenOf[pos] = n;
            }
        }
    }

    /// <summary>Puts the replayed rows' experts in place of the chosen ones; returns how many rows chose a different set.</summary>
    private int Replay(ReadOnlySpan<int> replay, int N)
    {
        int flips = 0;
        for (int n = 0; n < N; n++)
        {
            var given = replay.Slice(n * K, K);
            if (given[0] < 0)
            {
                continue;
            }

            var own = selected.AsSpan(n * K, K);
            bool same = true;
            for (int k = 0; k < K; k++)
            {
                int e = given[k];
                if ((uint)e >= (uint)E || given[..k].Contains(e))
                {
                    throw new ArgumentException($"replayed routing of token {n}: expert ids must be distinct and in [0, {E}), got [{string.Join(", ", given.ToArray())}]");
                }

                same &= own.Contains(e);
            }

            flips += same ? 0 : 1;
            given.CopyTo(own);
        }

        return flips;
    }

    /// <summary>Keeps the best topk_group groups (score = sum of the group's top 2) and sets the rest to −∞.</summary>
    private void MaskGroups(Span<float> row)
    {
        int size = E / G;
        for (int g = 0; g < G; g++)
        {
            float a = float.NegativeInfinity, b = float.NegativeInfinity;
            for (int j = g * size; j < (g + 1) * size; j++)
            {
                float v = row[j];
                if (v > a)
                {
                    b = a;
                    a = v;
                }
                else if (v > b)
                {
                    b = v;
                }
            }

            groupScore[g] = size == 1 ? a : a + b;
        }

        // keep topk_group groups: repeatedly take the best remaining (ties to the lower index)
        Span<bool> keep = stackalloc bool[G];
        keep.Clear();
        for (int t = 0; t < topkGroup; t++)
        {
            int best = -1;
            for (int g = 0; g < G; g++)
            {
                if (!keep[g] && (best < 0 || groupScore[g] > groupScore[best]))
                {
                    best = g;
                }
            }

            keep[best] = true;
        }

        for (int g = 0; g < G; g++)
        {
            if (!keep[g])
            {
                row.Slice(g * size, size).Fill(float.NegativeInfinity);
            }
        }
    }

    private void ForwardInference(int item, int worker)
    {
        if (item == 0)
        {
            SharedForward(outBuf, xIn, tokens, threads: 1);
        }
        else
        {
            ForwardExpert(item - 1, worker);
        }
    }

    /// <summary>
    /// Expert e on its gathered tokens: ye = down(silu(gate xe) ⊙ up xe), by one of three product paths that
    /// give a token the same bits whatever else shares its expert: the few-row products (decode), the packed
    /// GEMM from the fused [gate | up] rows keeping only the hidden (prefill), or SwiGluMlp keeping g and u for
    /// backward (training, and inference when gate and up are not adjacent).
    /// </summary>
    private void ForwardExpert(int e, int worker)
    {
        int cnt = counts[e], off = offsets[e];
        if (cnt == 0)
        {
            return;
        }

        for (int pos = off; pos < off + cnt; pos++)
        {
            xIn.AsSpan(tokenOf[pos] * D, D).CopyTo(xe.AsSpan(pos * D, D));
        }

        var x = xe.AsSpan(off * D, cnt * D);
        var y = ye.AsSpan(off * D, cnt * D);
        var h = he.AsSpan(off * F, cnt * F);
        var wGateUp = GateUp(slots.ExpertGate[e], slots.ExpertUp[e], F);
        if (fewRows)
        {
            var g = ge.AsSpan(off * F, cnt * F);
            var u = ue.AsSpan(off * F, cnt * F);
            FewRowProduct(g, x, slots.ExpertGate[e], cnt, D, F);
            FewRowProduct(u, x, slots.ExpertUp[e], cnt, D, F);
            SwiGlu.Forward(h, g, u, cnt * F);
            FewRowProduct(y, h, slots.ExpertDown[e], cnt, F, D);
        }
        else if (inference && !wGateUp.IsEmpty)
        {
            // SwiGluMlp.Forward's products and bits without keeping g and u: h straight from the fused [g | u] rows
            var gu = guE.AsSpan(off * 2 * F, cnt * 2 * F);
            Linear.Forward(gu, x, wGateUp, cnt, D, 2 * F, threads: 1);
            for (int r = 0; r < cnt; r++)
            {
                SwiGlu.Forward(h.Slice(r * F, F), gu.Slice(r * 2 * F, F), gu.Slice(r * 2 * F + F, F), F);
            }

            Gemm.Multiply(GemmOp.NT, y, D, h, F, P(slots.ExpertDown[e], D * F), F, cnt, D, F, false, maxThreads: 1);
        }
        else
        {
            SwiGluMlp.Forward(y, ge.AsSpan(off * F, cnt * F), ue.AsSpan(off * F, cnt * F), h, x, P(slots.ExpertGate[e], F * D),
                P(slots.ExpertUp[e], F * D), P(slots.ExpertDown[e], D * F), cnt, D, F, threads: 1,
                gu: guE.AsSpan(off * 2 * F, cnt * 2 * F), wGateUp: wGateUp);
        }
    }

    /// <summary>output[n, Out] = input[n, In] · W[Out, In]ᵀ by the few-row product, W read as bf16 when the call has them.</summary>
    private void FewRowProduct(Span<float> output, ReadOnlySpan<float> input, int weight, int n, int In, int Out)
    {
        if (weights16.Length > 0)
        {
            SmallGemm.MultiplyNT(output, Out, input, In, weights16.AsSpan(weight, Out * In), In, n, Out, In);
        }
        else
        {
            SmallGemm.MultiplyNT(output, Out, input, In, P(weight, Out * In), In, n, Out, In);
        }
    }

    /// <summary>output[N, D] = the shared expert of x (assigned; zeros without one).</summary>
    private void SharedForward(float[] output, float[] x, int N, int threads)
    {
        if (Fs > 0)
        {
            SwiGluMlp.Forward(output, gs, us, hs, x, P(slots.SharedGate, Fs * D), P(slots.SharedUp, Fs * D),
                P(slots.SharedDown, D * Fs), N, D, Fs, threads: threads, gu: guS, wGateUp: GateUp(slots.SharedGate, slots.SharedUp, Fs));
        }
        else
        {
            output.AsSpan(0, N * D).Clear();
        }
    }

    /// <summary>Below this many floats touched, the per-token loops are cheaper than waking a thread.</summary>
    private const int ParallelMinFloats = 1 << 17;

    /// <summary>Token ranges for the per-token loops: a fixed count, so the split never depends on timing.</summary>
    private const int TokenChunks = 16;

    private (int Start, int End) ChunkRange(int chunk) => (tokens * chunk / TokenChunks, tokens * (chunk + 1) / TokenChunks);

    private void Combine(int chunk, int worker)
    {
        var (n0, n1) = ChunkRange(chunk);
        for (int n = n0; n < n1; n++)
        {
            var o = outBuf.AsSpan(n * D, D);
            for (int k = 0; k < K; k++)
            {
                TensorPrimitives.MultiplyAdd(ye.AsSpan(posOf[n * K + k] * D, D), mix[n * K + k], o, o);
            }
        }
    }

    /// <summary>
    /// Given dOut[N, D], dX[N, D] (assigned) and every MoE weight's gradient (+=), the router's through the
    /// mixing weights (normalization included). The correction bias gets no gradient.
    /// </summary>
    public void Backward(float[] dX, float[] gradients, float[] dOut, float[] x, int N)
    {
        this.gradients = gradients;
        long t0 = StepProfile.Now;
        // shared expert: assigns dX
        if (Fs > 0)
        {
            SwiGluMlp.Backward(dX, Gr(slots.SharedGate, Fs * D), Gr(slots.SharedUp, Fs * D), Gr(slots.SharedDown, D * Fs),
                dHs, dGs, dUs, dOut, x, gs, us, hs, P(slots.SharedGate, Fs * D), P(slots.SharedUp, Fs * D),
                P(slots.SharedDown, D * Fs), N, D, Fs);
        }
        else
        {
            dX.AsSpan(0, N * D).Clear();
        }

        t0 = profile.Lap(ModelPhase.SharedExpert, t0);
        dOutBuf = dOut;
        dXBuf = dX;
        tokens = N;
        ForkJoinPool.Shared.For(TokenChunks, mixBackward, parallel: N * K * D >= ParallelMinFloats);   // d mix = dOut · y ; d y = mix · dOut
        t0 = profile.Lap(ModelPhase.MoeRouting, t0);
        ForkJoinPool.Shared.For(E, backwardExpert);
        t0 = profile.Lap(ModelPhase.MoeExperts, t0);
        ForkJoinPool.Shared.For(TokenChunks, scatter, parallel: N * K * D >= ParallelMinFloats);       // dX[n] += Σ_k dXe[pos(n, k)], slot order

        // router: mix_k = scaling * s_k / S (S = Σ chosen s, when normalizing); s = sigmoid(logit)
        var dR = dRouter.AsSpan(0, N * E);
        dR.Clear();
        for (int n = 0; n < N; n++)
        {
            float corr = 0f;
            if (normTopk)
            {
                double acc = 0;
                for (int k = 0; k < K; k++)
                {
                    acc += dMix[n * K + k] * scores[n * E + selected[n * K + k]];
                }

                corr = (float)(acc / ((double)denom[n] * denom[n]));
            }

            for (int k = 0; k < K; k++)
            {
                int e = selected[n * K + k];
                float s = scores[n * E + e];
                float ds = normTopk ? scaling * (dMix[n * K + k] / denom[n] - corr) : scaling * dMix[n * K + k];
                dR[n * E + e] = ds * s * (1f - s);
            }
        }

        if (balanceActive)
        {
            // the balance loss reaches every expert's score of every token, chosen or not
            var dBal = dBalance.AsSpan(0, N * E);
            var sc = scores.AsSpan(0, N * E);
            for (int i = 0; i < N * E; i++)
            {
                dR[i] += dBal[i] * sc[i] * (1f - sc[i]);
            }
        }

        Linear.Backward(dX, Gr(slots.Router, E * D), dR, x, P(slots.Router, E * D), N, D, E, accumulateInput: true);
        profile.Lap(ModelPhase.MoeRouting, t0);
        xIn = outBuf = dOutBuf = dXBuf = [];
    }

    private void MixBackward(int chunk, int worker)
    {
        var (n0, n1) = ChunkRange(chunk);
        for (int n = n0; n < n1; n++)
        {
            var g = dOutBuf.AsSpan(n * D, D);
            for (int k = 0; k < K; k++)
            {
                int pos = posOf[n * K + k];
                dMix[n * K + k] = TensorPrimitives.Dot(g, ye.AsSpan(pos * D, D));
                TensorPrimitives.Multiply(g, mix[n * K + k], dYe.AsSpan(pos * D, D));
            }
        }
    }

    private void BackwardExpert(int e, int worker)
    {
        int cnt = counts[e], off = offsets[e];
        if (cnt == 0)
        {
            return;
        }

        SwiGluMlp.Backward(dXe.AsSpan(off * D, cnt * D), Gr(slots.ExpertGate[e], F * D), Gr(slots.ExpertUp[e], F * D),
            Gr(slots.ExpertDown[e], D * F), dHe.AsSpan(off * F, cnt * F), dGe.AsSpan(off * F, cnt * F),
            dUe.AsSpan(off * F, cnt * F), dYe.AsSpan(off * D, cnt * D), xe.AsSpan(off * D, cnt * D),
            ge.AsSpan(off * F, cnt * F), ue.AsSpan(off * F, cnt * F), he.AsSpan(off * F, cnt * F),
            P(slots.ExpertGate[e], F * D), P(slots.ExpertUp[e], F * D), P(slots.ExpertDown[e], D * F), cnt, D, F, threads: 1);
    }

    private void Scatter(int chunk, int worker)
    {
        var (n0, n1) = ChunkRange(chunk);
        for (int n = n0; n < n1; n++)
        {
            var d = dXBuf.AsSpan(n * D, D);
            for (int k = 0; k < K; k++)
            {
                TensorPrimitives.Add(d, dXe.AsSpan(posOf[n * K + k] * D, D), d);
            }
        }
    }

    private Span<float> P(int offset, int length) => parameters.AsSpan(offset, length);

    /// <summary>[gate; up] as one [2·hidden, D] matrix when the two tensors are adjacent in the buffer, else empty.</summary>
    private ReadOnlySpan<float> GateUp(int gate, int up, int hidden) =>
        up == gate + hidden * D ? parameters.AsSpan(gate, 2 * hidden * D) : default;

    private Span<float> Gr(int offset, int length) => gradients.AsSpan(offset, length);
}
