using System.Numerics.Tensors;
using K2RL.Common;
using K2RL.Kernels;
using K2RL.Model.Layers;

namespace K2RL.Model.Inference;

/// <summary>
/// Inference over the compressed MLA cache (SPEC §1 item 6). <see cref="Prefill"/> runs the plain path (keys and
/// values expanded from the cached latents by kv_b_proj) for a run of tokens of one sequence;
/// <see cref="DecodeStep"/> advances B sequences by one token each with weight absorption: per head
/// q̃_h = W_UK_hᵀ q_nope_h (R values), score_j = (q̃_h·c_j + q_pe_h·k_pe_j)·scale, o_h = W_UV_h Σ_j p_j c_j,
/// where W_UK_h and W_UV_h are head h's k_nope and value rows of kv_b_proj. Both append c (after the norm) and
/// k_pe (after RoPE) to the cache and give the same logits as <see cref="K2Model"/>'s training forward.
/// Not thread-safe: one caller at a time. Letters: B sequences, D hidden, V vocab, H heads, Dn/Dr/Dv head dims,
/// R kv_lora_rank, Rq q_lora_rank, I dense hidden.
/// </summary>
public sealed class DecodeModel
{
    private readonly ModelConfig config;
    private readonly KvBlockPool pool;
    private readonly ParameterLayout layout;
    private readonly LayerSlots[] layerSlots;
    private readonly int D, V, L, H, Dn, Dr, Dv, R, Rq, HQ, HKV, RD, maxPos;
    private readonly bool hasQLora;
    private readonly float eps, scale;
    private readonly int embedOffset, normOffset, headOffset;
    private readonly float[] ropeCos, ropeSin;
    private readonly float[] parameters;         // as loaded, or rounded to bf16 values (Precision Bf16)
    private ushort[] experts16 = [];             // Bf16: the routed experts' rows for decode's small products (same offsets)
    private readonly float[] maxLogits;          // [L, H] of the last prefill
    private float[] rstdHead = [];               // [rows] final-norm scratch
    private readonly Work decode;
    private Work? prefill;
    private bool loaded;

    // decode: per-worker attention scratch, and the arguments of the step in flight
    private readonly float[][] workScores;       // per worker [H, maxPos]
    private readonly float[][] workProbs;        // per worker [H, maxPos]
    private IReadOnlyList<SequenceCache> stepSeqs = [];
    private int stepLayer;
    private readonly Action<int, int> decodeAttention, prefillHead, projectPart;

    // decode products: the one in flight, cut into column parts run by ForkJoinPool (see Project)
    private float[] projOut = [], projIn = [];
    private int projWeight, projRows, projInFeatures, projOutFeatures, projParts;

    // prefill: arguments of the call in flight (per sequence: first row, token count, start position, context offset)
    private IReadOnlyList<SequenceCache> pfSeqs = [];
    private int[] pfRow0 = [], pfCount = [], pfStart = [], pfCtx0 = [];
    private float[] pfMax = [];                  // [B, H] max logit per sequence and head of the layer in flight
    private readonly SequenceCache[] oneSeq = new SequenceCache[1];
    private readonly int[] oneCount = new int[1];

    /// <param name="precision">
    /// F32: the weights as given. Bf16: every weight except the routing biases is rounded to its nearest bf16
    /// value when loaded (as the checkpoint engine may ship them, DESIGN "Numbers are fp32 on CPU"), all arithmetic
    /// stays fp32, and decode reads the routed experts (most of its bytes) from a bf16 copy, half the bytes; every
    /// other product reads the rounded fp32 values. The logits are exactly those of an F32 model given the rounded
    /// weights. Memory: the rounded fp32 buffer plus a 2-byte copy laid out like it (only the experts' part filled).
    /// </param>
    public DecodeModel(ModelConfig config, KvBlockPool pool, int maxBatch, WeightPrecision precision = WeightPrecision.F32)
    {
        if (config.RopeScaling is not null)
        {
            throw new ConfigException("rope_scaling (YaRN) is not implemented by K2RL's model; remove it from the config");
        }

        if (pool.Config.KvLoraRank != config.KvLoraRank || pool.Config.QkRopeHeadDim != config.QkRopeHeadDim ||
            pool.Config.NumHiddenLayers != config.NumHiddenLayers)
        {
            throw new ArgumentException("the cache pool was built for a different model shape", nameof(pool));
        }

        if (maxBatch <= 0)
        {
            throw new ArgumentException($"maxBatch must be > 0, got {maxBatch}", nameof(maxBatch));
        }

        this.config = config;
        this.pool = pool;
        Precision = precision;
        layout = new ParameterLayout(config);
        D = config.HiddenSize;
        V = config.VocabSize;
        L = config.NumHiddenLayers;
        H = config.NumAttentionHeads;
        Dn = config.QkNopeHeadDim;
        Dr = config.QkRopeHeadDim;
        Dv = config.VHeadDim;
        R = config.KvLoraRank;
        hasQLora = config.QLoraRank is not null;
        Rq = config.QLoraRank ?? 0;
        HQ = H * (Dn + Dr);
        HKV = H * (Dn + Dv);
        RD = R + Dr;
        maxPos = config.MaxPositionEmbeddings;
        eps = config.RmsNormEps;
        scale = config.SoftmaxScale;
        MaxBatch = maxBatch;
        layerSlots = LayerSlots.All(layout);
        (embedOffset, normOffset, headOffset) = TrunkSlots.From(layout);
        (ropeCos, ropeSin) = Rope.BuildTables(Dr, maxPos, config.RopeTheta);
        parameters = layout.NewBuffer();
        maxLogits = new float[L * H];
        decode = new Work(this, maxBatch, contextCapacity: 0);
        workScores = ForkJoinPool.Shared.PerWorker(H * maxPos);
        workProbs = ForkJoinPool.Shared.PerWorker(H * maxPos);

        decodeAttention = DecodeAttention;
        prefillHead = PrefillHead;
        projectPart = ProjectPart;
    }

    public ModelConfig Config => config;

    /// <summary>Time per phase of prefill and decode calls, accumulated until reset.</summary>
    public StepProfile Profile { get; } = new();

    public int MaxBatch { get; }

    public WeightPrecision Precision { get; }

    /// <summary>[L, H] per layer and head, the max pre-softmax logit (scale included) of the last prefill.</summary>
    public ReadOnlySpan<float> MaxLogits => maxLogits;

    /// <summary>Copies a layout-sized parameter buffer (the caller may keep changing its own).</summary>
    public void LoadWeights(float[] parameters)
    {
        if (parameters.Length != this.parameters.Length)
        {
            throw new ArgumentException(
                $"parameter buffer has {parameters.Length} floats; this model's layout needs {this.parameters.Length}", nameof(parameters));
        }

        parameters.CopyTo(this.parameters, 0);
        if (Precision == WeightPrecision.Bf16)
        {
            RoundToBf16();
        }

        loaded = true;
    }

    /// <summary>Rounds the loaded weights (not the routing biases) to bf16 and packs the routed experts' rows.</summary>
    private void RoundToBf16()
    {
        if (experts16.Length == 0)
        {
            experts16 = new ushort[parameters.Length];
        }

        foreach (var t in layout.Tensors)
        {
            if (t.IsRoutingBias)
            {
                continue;
            }

            var values = t.Of(parameters);
            if (t.ExpertIndex >= 0)
            {
                var packed = experts16.AsSpan(checked((int)t.Offset), checked((int)t.Length));
                for (int r = 0; r < t.Rows; r++)
                {
                    SmallGemm.PackBf16Row(values.Slice(r * t.Cols, t.Cols), packed.Slice(r * t.Cols, t.Cols));
                }
            }

            Bf16.Round(values);
        }
    }

    // ------------------------------------------------------------------ prefill (plain path)

    /// <summary>
    /// Runs tokens through the model at positions seq.Length.., appending them to the cache (the caller has
    /// given the sequence enough blocks); writes the last position's logits to lastLogits[V] and, when
    /// allLogits is not empty, every position's to allLogits[tokens.Length, V].
    /// </summary>
    public void Prefill(SequenceCache seq, ReadOnlySpan<int> tokens, Span<float> lastLogits) =>
        Prefill(seq, tokens, lastLogits, default);

    /// <inheritdoc cref="Prefill(SequenceCache, ReadOnlySpan{int}, Span{float})"/>
    public void Prefill(SequenceCache seq, ReadOnlySpan<int> tokens, Span<float> lastLogits, Span<float> allLogits)
    {
        if (!allLogits.IsEmpty && allLogits.Length < tokens.Length * V)
        {
            throw new ArgumentException($"allLogits needs {tokens.Length}×{V} floats, got {allLogits.Length}", nameof(allLogits));
        }

        oneSeq[0] = seq;
        oneCount[0] = tokens.Length;
        try
        {
            PrefillBatch(oneSeq, tokens, oneCount, lastLogits, allLogits);
        }
        finally
        {
            oneSeq[0] = null!;
        }
    }

    /// <summary>
    /// Prefills several sequences at once (plain path): tokens holds counts[0] tokens for seqs[0], then counts[1]
    /// for seqs[1], …; each run starts at its sequence's Length and is appended to its cache. Projections, MoE
    /// and FFN run over all the tokens together; attention per (sequence, head). Writes each sequence's last
    /// logits to lastLogits[B, V] and, when allLogits is not empty, every token's to allLogits[Σ counts, V].
    /// </summary>
    public void PrefillBatch(IReadOnlyList<SequenceCache> seqs, ReadOnlySpan<int> tokens, ReadOnlySpan<int> counts,
        Span<float> lastLogits, Span<float> allLogits = default)
    {
        EnsureLoaded();
        int B = seqs.Count;
        if (counts.Length != B || B == 0)
        {
            throw new ArgumentException($"need one count per sequence: {B} sequences, {counts.Length} counts (and at least one)");
        }

        if (pfRow0.Length < B)
        {
            pfRow0 = new int[B];
            pfCount = new int[B];
            pfStart = new int[B];
            pfCtx0 = new int[B];
            pfMax = new float[B * H];
        }

        int total = 0, ctxTotal = 0;
        long scoreMax = 0;
        for (int b = 0; b < B; b++)
        {
            int n = counts[b], start = seqs[b].Length;
            if (n <= 0)
            {
                throw new ArgumentException($"prefill needs at least one token per sequence; sequence {b} has {n}", nameof(counts));
            }

            CheckRoom(seqs[b], start + n, $"prefill (sequence {b})");
            pfRow0[b] = total;
            pfCount[b] = n;
            pfStart[b] = start;
            pfCtx0[b] = ctxTotal;
            total += n;
            ctxTotal += start + n;
            scoreMax = Math.Max(scoreMax, (long)n * (start + n));
        }

        if (tokens.Length != total)
        {
            throw new ArgumentException($"counts add up to {total} tokens, got {tokens.Length}", nameof(tokens));
        }

        CheckTokens(tokens);
        if (lastLogits.Length < B * V || (!allLogits.IsEmpty && allLogits.Length < total * V))
        {
            throw new ArgumentException($"logits spans too small: last needs {B}×{V}, all needs {total}×{V}");
        }

        var w = prefill;
        if (w is null || w.Capacity < Math.Max(total, B) || w.ContextCapacity < ctxTotal || w.ScoreCapacity < scoreMax)
        {
            prefill = null;
            w = prefill = new Work(this, Math.Max(Math.Max(total, B), w?.Capacity ?? 0), Math.Max(ctxTotal, w?.ContextCapacity ?? 0),
                Math.Max(scoreMax, w?.ScoreCapacity ?? 0));
        }

        for (int b = 0; b < B; b++)
        {
            for (int i = 0; i < pfCount[b]; i++)
            {
                w.Positions[pfRow0[b] + i] = pfStart[b] + i;
            }
        }

        Embed(w, tokens);
        pfSeqs = seqs;
        for (int l = 0; l < L; l++)
        {
            var s = layerSlots[l];
            long t0 = StepProfile.Now;
            ProjectQueryAndLatent(w, s, total);
            for (int b = 0; b < B; b++)
            {
                WriteCache(seqs[b], w, l, pfCount[b], pfStart[b], row: pfRow0[b]);
                // expand every cached latent of the sequence: [k_nope | v] = c Wkvbᵀ over positions [0, ctx)
                int ctx = pfStart[b] + pfCount[b];
                ReadCache(seqs[b], l, ctx, w.CtxLatent.AsSpan(pfCtx0[b] * R), w.CtxKpe.AsSpan(pfCtx0[b] * Dr));
            }

            Project(w.CtxKv, w.CtxLatent, s.KvB, ctxTotal, R, HKV);
            t0 = Profile.Lap(ModelPhase.AttentionProjections, t0);
            stepLayer = l;
            ForkJoinPool.Shared.For(B * H, prefillHead);
            for (int h = 0; h < H; h++)
            {
                float m = float.NegativeInfinity;
                for (int b = 0; b < B; b++)
                {
                    m = Math.Max(m, pfMax[b * H + h]);
                }

                maxLogits[l * H + h] = m;
            }

            Profile.Lap(ModelPhase.AttentionCore, t0);
            FinishLayer(w, s, total);
        }

        pfSeqs = [];
        for (int b = 0; b < B; b++)
        {
            seqs[b].Length = pfStart[b] + pfCount[b];
        }

        long th = StepProfile.Now;
        if (!allLogits.IsEmpty)
        {
            Head(w, w.X.AsSpan(0, total * D), total, allLogits);
            for (int b = 0; b < B; b++)
            {
                allLogits.Slice((pfRow0[b] + pfCount[b] - 1) * V, V).CopyTo(lastLogits.Slice(b * V, V));
            }
        }
        else
        {
            for (int b = 0; b < B; b++)
            {
                w.X.AsSpan((pfRow0[b] + pfCount[b] - 1) * D, D).CopyTo(w.Tmp.AsSpan(b * D, D));
            }

            Head(w, w.Tmp.AsSpan(0, B * D), B, lastLogits);
        }

        Profile.Lap(ModelPhase.HeadAndLoss, th);
    }

    private void PrefillHead(int item, int worker)
    {
        var w = prefill!;
        int b = item / H, h = item % H;
        int n = pfCount[b], start = pfStart[b], ctx = start + n, row0 = pfRow0[b], c0 = pfCtx0[b];
        var s = w.PrefillScores[worker].AsSpan(0, n * ctx);
        var p = w.PrefillProbs[worker].AsSpan(0, n * ctx);
        var qh = w.Q.AsSpan(row0 * HQ + h * (Dn + Dr));
        var kvh = w.CtxKv.AsSpan(c0 * HKV + h * (Dn + Dv));
        Gemm.Multiply(GemmOp.NT, s, ctx, qh, HQ, kvh, HKV, n, ctx, Dn, false, maxThreads: 1);
        Gemm.Multiply(GemmOp.NT, s, ctx, qh[Dn..], HQ, w.CtxKpe.AsSpan(c0 * Dr), Dr, n, ctx, Dr, true, maxThreads: 1);
        pfMax[item] = Softmax.Forward(p, s, n, ctx, scale, causal: true, causalOffset: start);
        Gemm.Multiply(GemmOp.NN, w.AttnOut.AsSpan(row0 * H * Dv + h * Dv), H * Dv, p, ctx, kvh[Dn..], HKV, n, Dv, ctx,
            false, maxThreads: 1);
    }

    // ------------------------------------------------------------------ decode (absorbed path)

    /// <summary>
    /// One new token for each sequence, each at its own position seqs[b].Length; appends to each cache and
    /// writes logits[B, V].
    /// </summary>
    public void DecodeStep(IReadOnlyList<SequenceCache> seqs, ReadOnlySpan<int> tokens, Span<float> logits)
    {
        EnsureLoaded();
        int B = seqs.Count;
        if (B == 0)
        {
            return;
        }

        if (B > MaxBatch)
        {
            throw new ArgumentException($"{B} sequences exceed this model's maxBatch {MaxBatch}", nameof(seqs));
        }

        if (tokens.Length != B || logits.Length < B * V)
        {
            throw new ArgumentException($"need {B} tokens (got {tokens.Length}) and logits [{B}, {V}] (got {logits.Length})");
        }

        CheckTokens(tokens);
        var w = decode;
        for (int b = 0; b < B; b++)
        {
            CheckRoom(seqs[b], seqs[b].Length + 1, $"decode (sequence {b})");
            w.Positions[b] = seqs[b].Length;
        }

        Embed(w, tokens);
        stepSeqs = seqs;
        var prof = Profile;
        for (int l = 0; l < L; l++)
        {
            var s = layerSlots[l];
            long t0 = StepProfile.Now;
            ProjectQueryAndLatent(w, s, B);
            t0 = prof.Lap(ModelPhase.AttentionProjections, t0);
            for (int b = 0; b < B; b++)
            {
                WriteCache(seqs[b], w, l, 1, seqs[b].Length, row: b);
            }

            // q̃_h [B, R] = q_nope_h [B, Dn] · W_UK_h [Dn, R]; then [q̃_h | q_pe_h] per (b, h) in QCat [B, H, R + Dr]
            var wkvb = P(s.KvB, HKV * R);
            w.QCat.AsSpan(0, B * H * RD).Clear();
            for (int h = 0; h < H; h++)
            {
                SmallGemm.MultiplyAddNN(w.QCat.AsSpan(h * RD), H * RD, w.Q.AsSpan(h * (Dn + Dr)), HQ,
                    wkvb[(h * (Dn + Dv) * R)..], R, B, R, Dn);
                for (int b = 0; b < B; b++)
                {
                    w.Q.AsSpan(b * HQ + h * (Dn + Dr) + Dn, Dr).CopyTo(w.QCat.AsSpan((b * H + h) * RD + R, Dr));
                }
            }

            stepLayer = l;
            long work = 0;
            for (int b = 0; b < B; b++)
            {
                work += (long)(seqs[b].Length + 1) * H * RD;
            }

            ForkJoinPool.Shared.For(B, decodeAttention, parallel: work >= 1 << 18);
            // o_h [B, Dv] = ctx_h [B, R] · W_UV_hᵀ
            for (int h = 0; h < H; h++)
            {
                SmallGemm.MultiplyNT(w.AttnOut.AsSpan(h * Dv), H * Dv, w.Ctx.AsSpan(h * R), H * R,
                    wkvb[((h * (Dn + Dv) + Dn) * R)..], R, B, Dv, R);
            }

            prof.Lap(ModelPhase.AttentionCore, t0);
            FinishLayer(w, s, B);
        }

        stepSeqs = [];
        long th = StepProfile.Now;
        Head(w, w.X.AsSpan(0, B * D), B, logits);
        // only now: a step that throws leaves every sequence as it was (its cache slot at Length is rewritten on a retry)
        for (int b = 0; b < B; b++)
        {
            seqs[b].Length++;
        }

        prof.Lap(ModelPhase.HeadAndLoss, th);
    }

    /// <summary>
    /// Sequence b: score_hj = [q̃_h | q_pe_h] · [c_j | k_pe_j] over its cached tokens (one dot of R + Dr per head
    /// and token, each cache row read once for all heads), softmax, then ctx_h = Σ_j p_hj c_j.
    /// </summary>
    private void DecodeAttention(int b, int worker)
    {
        var w = decode;
        var seq = stepSeqs[b];
        int len = seq.Length + 1; // the new token was written already
        int bt = pool.BlockTokens;
        var s = workScores[worker].AsSpan(0, H * len);
        var p = workProbs[worker].AsSpan(0, H * len);
        var qcat = w.QCat.AsSpan(b * H * RD, H * RD);
        for (int start = 0, blk = 0; start < len; start += bt, blk++)
        {
            int cnt = Math.Min(bt, len - start);
            // scores [H, cnt] of this block = qcat [H, RD] · rows [cnt, RD]ᵀ
            SmallGemm.MultiplyNT(s[start..], len, qcat, RD, pool.LayerRows(seq.Blocks[blk], stepLayer), RD, H, cnt, RD);
        }

        Softmax.Forward(p, s, H, len, scale, causal: false);
        var ctx = w.Ctx.AsSpan(b * H * R, H * R);
        ctx.Clear();
        for (int start = 0, blk = 0; start < len; start += bt, blk++)
        {
            int cnt = Math.Min(bt, len - start);
            // ctx [H, R] += p [H, cnt] · c [cnt, R] of this block
            SmallGemm.MultiplyAddNN(ctx, R, p[start..], len, pool.LayerRows(seq.Blocks[blk], stepLayer), RD, H, R, cnt);
        }
    }

    // ------------------------------------------------------------------ shared pieces

    private void Embed(Work w, ReadOnlySpan<int> tokens)
    {
        var embed = P(embedOffset, V * D);
        for (int i = 0; i < tokens.Length; i++)
        {
            embed.Slice(tokens[i] * D, D).CopyTo(w.X.AsSpan(i * D, D));
        }
    }

    /// <summary>ln1, q (roped), c (normed) and k_pe (roped) for n tokens at w.Positions.</summary>
    private void ProjectQueryAndLatent(Work w, LayerSlots s, int n)
    {
        var pos = w.Positions.AsSpan(0, n);
        RmsNorm.Forward(w.Ln, w.Rstd, w.X, P(s.InputNorm, D), n, D, eps);
        if (hasQLora)
        {
            Project(w.Qa, w.Ln, s.QA, n, D, Rq);
            RmsNorm.Forward(w.QaN, w.Rstd, w.Qa, P(s.QANorm, Rq), n, Rq, eps);
            Project(w.Q, w.QaN, s.QB, n, Rq, HQ);
        }
        else
        {
            Project(w.Q, w.Ln, s.Q, n, D, HQ);
        }

        Rope.Apply(w.Q, pos, ropeCos, ropeSin, n, HQ, H, Dn + Dr, Dn, Dr);
        // [c | k_pe] in one product (the two weights are adjacent rows of kv_a_proj), rope on k_pe, then split
        Project(w.KvA, w.Ln, s.KvA, n, D, RD);
        Rope.Apply(w.KvA, pos, ropeCos, ropeSin, n, RD, 1, RD, R, Dr);
        for (int i = 0; i < n; i++)
        {
            w.KvA.AsSpan(i * RD, R).CopyTo(w.CRaw.AsSpan(i * R, R));
            w.KvA.AsSpan(i * RD + R, Dr).CopyTo(w.Kpe.AsSpan(i * Dr, Dr));
        }

        RmsNorm.Forward(w.CN, w.Rstd, w.CRaw, P(s.KvNorm, R), n, R, eps);
    }

    /// <summary>Appends rows [row, row + n) of c and k_pe at positions start.. of one sequence's cache.</summary>
    private void WriteCache(SequenceCache seq, Work w, int layer, int n, int start, int row = 0)
    {
        int bt = pool.BlockTokens;
        for (int i = 0; i < n; i++)
        {
            int pos = start + i;
            var dst = pool.LayerRows(seq.Blocks[pos / bt], layer).Slice(pos % bt * RD, RD);
            w.CN.AsSpan((row + i) * R, R).CopyTo(dst);
            w.Kpe.AsSpan((row + i) * Dr, Dr).CopyTo(dst[R..]);
        }
    }

    private void ReadCache(SequenceCache seq, int layer, int count, Span<float> latent, Span<float> kpe)
    {
        int bt = pool.BlockTokens;
        for (int pos = 0; pos < count; pos++)
        {
            var src = pool.LayerRows(seq.Blocks[pos / bt], layer).Slice(pos % bt * RD, RD);
            src[..R].CopyTo(latent.Slice(pos * R, R));
            src[R..].CopyTo(kpe.Slice(pos * Dr, Dr));
        }
    }

    /// <summary>o_proj and residual, then the FFN sub-block; X holds the layer's output after.</summary>
    private void FinishLayer(Work w, LayerSlots s, int n)
    {
        long t0 = StepProfile.Now;
        Project(w.Tmp, w.AttnOut, s.O, n, H * Dv, D);
        AddInPlace(w.X, w.Tmp, n * D);
        RmsNorm.Forward(w.Ln, w.Rstd, w.X, P(s.PostNorm, D), n, D, eps);
        t0 = Profile.Lap(ModelPhase.AttentionProjections, t0);
        if (s.IsMoe)
        {
            w.Moe!.Forward(w.Tmp, w.Ln, parameters, s, n, experts16);
        }
        else
        {
            int I = config.IntermediateSize;
            // SwiGluMlp.Forward's products, each cut over ForkJoinPool (the same bits)
            Project(w.G, w.Ln, s.MlpGate, n, D, I);
            Project(w.U, w.Ln, s.MlpUp, n, D, I);
            SwiGlu.Forward(w.Hd, w.G, w.U, n * I);
            Project(w.Tmp, w.Hd, s.MlpDown, n, I, D);
            Profile.Lap(ModelPhase.DenseMlp, t0);
        }

        AddInPlace(w.X, w.Tmp, n * D);
    }

    /// <summary>
    /// logits[n, V] of final hidden states x[n, D]: the final norm into w.Ln, the head product into w.Logits (see
    /// <see cref="Project"/>: the same bits for any n), copied out.
    /// </summary>
    private void Head(Work w, ReadOnlySpan<float> x, int n, Span<float> logits)
    {
        RmsNorm.Forward(w.Ln.AsSpan(0, n * D), rstdHead.AsSpan(0, n), x, P(normOffset, D), n, D, eps);
        Project(w.Logits, w.Ln, headOffset, n, D, V);
        w.Logits.AsSpan(0, n * V).CopyTo(logits);
    }

    /// <summary>
    /// output[n, Out] = input[n, In] · W[Out, In]ᵀ with W at weightOffset in the parameters. Many rows (prefill's
    /// products): the packed GEMM on the kernel threads, which shares one packed copy of W between its threads.
    /// Few rows (decode, prefill's last-position head): the same GEMM, one thread per call, over column parts run
    /// by <see cref="ForkJoinPool"/>, so a decode step keeps one pool busy instead of two pools on the same cores
    /// (the kernel threads' idle spin between GEMMs took ~19 % of decode CPU while the model threads ran the
    /// experts; docs/BENCHMARKS.md "Rollout"). Every element's reduction is the packed GEMM's whatever the column
    /// range or the number of rows (its order depends on the reduction length alone), so the bits equal
    /// Linear.Forward's and a row's bits do not depend on the other rows. (The few-row SmallGemm was tried for
    /// decode's projections: no faster at batch 32 and ~10 % slower decode at batch 128; docs/BENCHMARKS.md.)
    /// </summary>
    private void Project(float[] output, float[] input, int weightOffset, int n, int In, int Out)
    {
        if (n >= ProjectKernelThreadsMinRows)
        {
            Linear.Forward(output, input, P(weightOffset, Out * In), n, In, Out);
            return;
        }

        projOut = output;
        projIn = input;
        projWeight = weightOffset;
        projRows = n;
        projInFeatures = In;
        projOutFeatures = Out;
        long flops = 2L * n * In * Out;
        projParts = flops < ProjectParallelMinFlops ? 1 : Math.Min(ProjectMaxParts, (Out + ProjectPartColumns - 1) / ProjectPartColumns);
        ForkJoinPool.Shared.For(projParts, projectPart, parallel: projParts > 1);
        projOut = projIn = [];
    }

    /// <summary>Products of at least this many rows run on the kernel threads (prefill).</summary>
    private const int ProjectKernelThreadsMinRows = 192;

    /// <summary>Products below this many flops run on the calling thread alone.</summary>
    private const long ProjectParallelMinFlops = 1L << 19;

    /// <summary>Column parts: at most this many, each a multiple of 16 columns (the GEMM tile).</summary>
    private const int ProjectMaxParts = 8, ProjectPartColumns = 32;

    private void ProjectPart(int part, int worker)
    {
        int Out = projOutFeatures, In = projInFeatures;
        int per = (Out + projParts - 1) / projParts;
        per = (per + 15) / 16 * 16;
        int j0 = Math.Min(Out, part * per), j1 = Math.Min(Out, j0 + per);
        if (j1 <= j0)
        {
            return;
        }

        Gemm.Multiply(GemmOp.NT, projOut.AsSpan(j0), Out, projIn, In, P(projWeight + j0 * In, (j1 - j0) * In), In, projRows, j1 - j0, In,
            false, maxThreads: 1);
    }

    private static void AddInPlace(Span<float> acc, ReadOnlySpan<float> b, int n) =>
        TensorPrimitives.Add(acc[..n], b[..n], acc[..n]);

    private Span<float> P(int offset, int length) => parameters.AsSpan(offset, length);

    private void EnsureLoaded()
    {
        if (!loaded)
        {
            throw new InvalidOperationException("DecodeModel: call LoadWeights before Prefill or DecodeStep");
        }
    }

    private void CheckTokens(ReadOnlySpan<int> tokens)
    {
        for (int i = 0; i < tokens.Length; i++)
        {
            if ((uint)tokens[i] >= (uint)V)
            {
                throw new ArgumentException($"token id {tokens[i]} at position {i} is outside the vocabulary [0, {V})", nameof(tokens));
            }
        }
    }

    private void CheckRoom(SequenceCache seq, int length, string what)
    {
        if (length > maxPos)
        {
            throw new ArgumentException($"{what}: length {length} exceeds max_position_embeddings {maxPos}");
        }

        if (length > seq.Capacity(pool))
        {
            throw new InvalidOperationException(
                $"{what}: {length} tokens need {(length + pool.BlockTokens - 1) / pool.BlockTokens} blocks, the sequence holds {seq.Blocks.Count}");
        }
    }

    /// <summary>Buffers for up to Capacity tokens at once (and, for prefill, ContextCapacity cached tokens).</summary>
    private sealed class Work
    {
        public Work(DecodeModel m, int capacity, int contextCapacity, long scoreCapacity = 0)
        {
            Capacity = capacity;
            ContextCapacity = contextCapacity;
            ScoreCapacity = scoreCapacity;
            if (m.rstdHead.Length < capacity)
            {
                m.rstdHead = new float[capacity];
            }

            int C = capacity, I = m.config.IntermediateSize;
            Positions = new int[C];
            X = new float[C * m.D];
            Ln = new float[C * m.D];
            Tmp = new float[C * m.D];
            Rstd = new float[C];
            Qa = new float[C * m.Rq];
            QaN = new float[C * m.Rq];
            Q = new float[C * m.HQ];
            KvA = new float[C * m.RD];
            CRaw = new float[C * m.R];
            CN = new float[C * m.R];
            Kpe = new float[C * m.Dr];
            AttnOut = new float[C * m.H * m.Dv];
            QCat = new float[contextCapacity == 0 ? C * m.H * m.RD : 0];
            Ctx = new float[contextCapacity == 0 ? C * m.H * m.R : 0];
            Logits = new float[C * m.V];
            bool anyDense = Enumerable.Range(0, m.L).Any(l => !m.layerSlots[l].IsMoe);
            bool anyMoe = Enumerable.Range(0, m.L).Any(l => m.layerSlots[l].IsMoe);
            G = new float[anyDense ? C * I : 0];
            U = new float[anyDense ? C * I : 0];
            Hd = new float[anyDense ? C * I : 0];
            // decode: the few-row expert products; prefill: the packed GEMM (both row-independent, so batch-independent)
            Moe = anyMoe ? new MoeBlock(m.config, C, trainable: false, m.Profile, fewRows: contextCapacity == 0) : null;
            CtxLatent = new float[contextCapacity * m.R];
            CtxKpe = new float[contextCapacity * m.Dr];
            CtxKv = new float[contextCapacity * m.HKV];
            PrefillScores = contextCapacity == 0 ? [] : ForkJoinPool.Shared.PerWorker(scoreCapacity);
            PrefillProbs = contextCapacity == 0 ? [] : ForkJoinPool.Shared.PerWorker(scoreCapacity);
        }

        public int Capacity { get; }
        public int ContextCapacity { get; }
        public long ScoreCapacity { get; }
        public int[] Positions { get; }     // [C]
        public float[] X { get; }           // [C, D] residual stream
        public float[] Ln { get; }          // [C, D] normed
        public float[] Tmp { get; }         // [C, D] sub-block output
        public float[] Rstd { get; }        // [C] (not kept)
        public float[] Qa { get; }          // [C, Rq]
        public float[] QaN { get; }         // [C, Rq]
        public float[] Q { get; }           // [C, H*(Dn+Dr)] roped
        public float[] KvA { get; }         // [C, R+Dr] c | k_pe (roped)
        public float[] CRaw { get; }        // [C, R]
        public float[] CN { get; }          // [C, R] normed latent (cached)
        public float[] Kpe { get; }         // [C, Dr] roped (cached)
        public float[] AttnOut { get; }     // [C, H*Dv]
        public float[] QCat { get; }        // decode [C, H, R+Dr] absorbed query | q_pe
        public float[] Ctx { get; }         // decode [C, H, R] Σ p c
        public float[] Logits { get; }      // [C, V] (prefill: the last rows' head)
        public float[] G { get; }           // [C, I]
        public float[] U { get; }           // [C, I]
        public float[] Hd { get; }          // [C, I]
        public MoeBlock? Moe { get; }
        public float[] CtxLatent { get; }   // prefill [ctx, R]
        public float[] CtxKpe { get; }      // prefill [ctx, Dr]
        public float[] CtxKv { get; }       // prefill [ctx, H*(Dn+Dv)]
        public float[][] PrefillScores { get; } // per worker, max over sequences of [n, ctx]
        public float[][] PrefillProbs { get; }  // per worker, max over sequences of [n, ctx]
    }
}
