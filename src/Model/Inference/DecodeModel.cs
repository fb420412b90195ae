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
    private readonly float[] parameters;
    private readonly float[] maxLogits;          // [L, H] of the last prefill
    private readonly Work decode;
    private Work? prefill;
    private bool loaded;

    // decode: per-worker attention scratch, and the arguments of the step in flight
    private readonly float[][] workScores;       // per worker [H, maxPos]
    private readonly float[][] workProbs;        // per worker [H, maxPos]
    private IReadOnlyList<SequenceCache> stepSeqs = [];
    private int stepLayer;
    private readonly Action<int, int> decodeAttention, prefillHead;

    // prefill: arguments of the call in flight
    private int pfTokens, pfStart;

    public DecodeModel(ModelConfig config, KvBlockPool pool, int maxBatch)
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
        layerSlots = new LayerSlots[L];
        for (int l = 0; l < L; l++)
        {
            layerSlots[l] = new LayerSlots(layout, l);
        }

        embedOffset = (int)layout["model.embed_tokens.weight"].Offset;
        normOffset = (int)layout["model.norm.weight"].Offset;
        headOffset = config.TieWordEmbeddings ? embedOffset : (int)layout["lm_head.weight"].Offset;
        (ropeCos, ropeSin) = Rope.BuildTables(Dr, maxPos, config.RopeTheta);
        parameters = layout.NewBuffer();
        maxLogits = new float[L * H];
        decode = new Work(this, maxBatch, contextCapacity: 0);
        workScores = new float[ModelThreads.Workers][];
        workProbs = new float[ModelThreads.Workers][];
        for (int w = 0; w < ModelThreads.Workers; w++)
        {
            workScores[w] = new float[H * maxPos];
            workProbs[w] = new float[H * maxPos];
        }

        decodeAttention = DecodeAttention;
        prefillHead = PrefillHead;
    }

    public ModelConfig Config => config;

    public int MaxBatch { get; }

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
        loaded = true;
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
        EnsureLoaded();
        int Tn = tokens.Length, start = seq.Length;
        if (Tn == 0)
        {
            throw new ArgumentException("prefill needs at least one token", nameof(tokens));
        }

        CheckRoom(seq, start + Tn, "prefill");
        CheckTokens(tokens);
        if (lastLogits.Length < V || (!allLogits.IsEmpty && allLogits.Length < Tn * V))
        {
            throw new ArgumentException($"logits spans too small: last needs {V}, all needs {Tn}×{V}");
        }

        var w = prefill;
        if (w is null || w.Capacity < Tn || w.ContextCapacity < start + Tn)
        {
            prefill = null;
            w = prefill = new Work(this, Math.Max(Tn, w?.Capacity ?? 0), Math.Max(start + Tn, w?.ContextCapacity ?? 0));
        }

        for (int i = 0; i < Tn; i++)
        {
            w.Positions[i] = start + i;
        }

        Embed(w, tokens);
        pfTokens = Tn;
        pfStart = start;
        int ctx = start + Tn;
        for (int l = 0; l < L; l++)
        {
            var s = layerSlots[l];
            ProjectQueryAndLatent(w, s, Tn);
            WriteCache(seq, w, l, Tn, start);
            // expand every cached latent: [k_nope | v] = c Wkvbᵀ over positions [0, ctx)
            ReadCache(seq, l, ctx, w.CtxLatent, w.CtxKpe);
            Linear.Forward(w.CtxKv, w.CtxLatent, P(s.KvB, HKV * R), ctx, R, HKV);
            stepLayer = l;
            ModelThreads.For(H, prefillHead);
            FinishLayer(w, s, Tn);
        }

        for (int h = 0; h < H * L; h++)
        {
            maxLogits[h] = w.HeadMax[h];
        }

        seq.Length = start + Tn;
        if (allLogits.IsEmpty)
        {
            Head(w, Tn - 1, 1, lastLogits);
        }
        else
        {
            Head(w, 0, Tn, allLogits);
            allLogits.Slice((Tn - 1) * V, V).CopyTo(lastLogits);
        }
    }

    private void PrefillHead(int h, int worker)
    {
        var w = prefill!;
        int Tn = pfTokens, P = pfStart, ctx = P + Tn;
        var s = w.PrefillScores[worker].AsSpan(0, Tn * ctx);
        var p = w.PrefillProbs[worker].AsSpan(0, Tn * ctx);
        var qh = w.Q.AsSpan(h * (Dn + Dr));
        var kvh = w.CtxKv.AsSpan(h * (Dn + Dv));
        Gemm.Multiply(GemmOp.NT, s, ctx, qh, HQ, kvh, HKV, Tn, ctx, Dn);
        Gemm.Multiply(GemmOp.NT, s, ctx, qh[Dn..], HQ, w.CtxKpe, Dr, Tn, ctx, Dr, accumulate: true);
        w.HeadMax[stepLayer * H + h] = Softmax.Forward(p, s, Tn, ctx, scale, causal: true, causalOffset: P);
        Gemm.Multiply(GemmOp.NN, w.AttnOut.AsSpan(h * Dv), H * Dv, p, ctx, kvh[Dn..], HKV, Tn, Dv, ctx);
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
        for (int l = 0; l < L; l++)
        {
            var s = layerSlots[l];
            ProjectQueryAndLatent(w, s, B);
            for (int b = 0; b < B; b++)
            {
                WriteCache(seqs[b], w, l, 1, seqs[b].Length, row: b);
            }

            // q̃_h [B, R] = q_nope_h [B, Dn] · W_UK_h [Dn, R]; then [q̃_h | q_pe_h] per (b, h) in QCat [B, H, R + Dr]
            var wkvb = P(s.KvB, HKV * R);
            for (int h = 0; h < H; h++)
            {
                Gemm.Multiply(GemmOp.NN, w.QCat.AsSpan(h * RD), H * RD, w.Q.AsSpan(h * (Dn + Dr)), HQ,
                    wkvb[(h * (Dn + Dv) * R)..], R, B, R, Dn);
                for (int b = 0; b < B; b++)
                {
                    w.Q.AsSpan(b * HQ + h * (Dn + Dr) + Dn, Dr).CopyTo(w.QCat.AsSpan((b * H + h) * RD + R, Dr));
                }
            }

            stepLayer = l;
            ModelThreads.For(B, decodeAttention);
            // o_h [B, Dv] = ctx_h [B, R] · W_UV_hᵀ
            for (int h = 0; h < H; h++)
            {
                Gemm.Multiply(GemmOp.NT, w.AttnOut.AsSpan(h * Dv), H * Dv, w.Ctx.AsSpan(h * R), H * R,
                    wkvb[((h * (Dn + Dv) + Dn) * R)..], R, B, Dv, R);
            }

            FinishLayer(w, s, B);
        }

        for (int b = 0; b < B; b++)
        {
            seqs[b].Length++;
        }

        stepSeqs = [];
        Head(w, 0, B, logits);
    }

    /// <summary>Sequence b: scores over its cached tokens block by block, softmax, context = Σ p c.</summary>
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
            var rows = pool.LayerRows(seq.Blocks[blk], stepLayer);
            Gemm.Multiply(GemmOp.NT, s[start..], len, qcat, RD, rows, RD, H, cnt, RD);
        }

        Softmax.Forward(p, s, H, len, scale, causal: false);
        var ctx = w.Ctx.AsSpan(b * H * R, H * R);
        for (int start = 0, blk = 0; start < len; start += bt, blk++)
        {
            int cnt = Math.Min(bt, len - start);
            var rows = pool.LayerRows(seq.Blocks[blk], stepLayer);
            Gemm.Multiply(GemmOp.NN, ctx, R, p[start..], len, rows, RD, H, R, cnt, accumulate: start > 0);
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
            Linear.Forward(w.Qa, w.Ln, P(s.QA, Rq * D), n, D, Rq);
            RmsNorm.Forward(w.QaN, w.Rstd, w.Qa, P(s.QANorm, Rq), n, Rq, eps);
            Linear.Forward(w.Q, w.QaN, P(s.QB, HQ * Rq), n, Rq, HQ);
        }
        else
        {
            Linear.Forward(w.Q, w.Ln, P(s.Q, HQ * D), n, D, HQ);
        }

        Rope.Apply(w.Q, pos, ropeCos, ropeSin, n, HQ, H, Dn + Dr, Dn, Dr);
        var wKvA = P(s.KvA, RD * D);
        Linear.Forward(w.CRaw, w.Ln, wKvA[..(R * D)], n, D, R);
        Linear.Forward(w.Kpe, w.Ln, wKvA[(R * D)..], n, D, Dr);
        Rope.Apply(w.Kpe, pos, ropeCos, ropeSin, n, Dr, 1, Dr, 0, Dr);
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

    private void ReadCache(SequenceCache seq, int layer, int count, float[] latent, float[] kpe)
    {
        int bt = pool.BlockTokens;
        for (int pos = 0; pos < count; pos++)
        {
            var src = pool.LayerRows(seq.Blocks[pos / bt], layer).Slice(pos % bt * RD, RD);
            src[..R].CopyTo(latent.AsSpan(pos * R, R));
            src[R..].CopyTo(kpe.AsSpan(pos * Dr, Dr));
        }
    }

    /// <summary>o_proj and residual, then the FFN sub-block; X holds the layer's output after.</summary>
    private void FinishLayer(Work w, LayerSlots s, int n)
    {
        Linear.Forward(w.Tmp, w.AttnOut, P(s.O, D * H * Dv), n, H * Dv, D);
        AddInPlace(w.X, w.Tmp, n * D);
        RmsNorm.Forward(w.Ln, w.Rstd, w.X, P(s.PostNorm, D), n, D, eps);
        if (s.IsMoe)
        {
            w.Moe!.Forward(w.Tmp, w.Ln, parameters, s, n);
        }
        else
        {
            int I = config.IntermediateSize;
            SwiGluMlp.Forward(w.Tmp, w.G, w.U, w.Hd, w.Ln, P(s.MlpGate, I * D), P(s.MlpUp, I * D), P(s.MlpDown, D * I), n, D, I);
        }

        AddInPlace(w.X, w.Tmp, n * D);
    }

    /// <summary>logits for rows [first, first + n) of X.</summary>
    private void Head(Work w, int first, int n, Span<float> logits)
    {
        var x = w.X.AsSpan(first * D, n * D);
        var ln = w.Ln.AsSpan(0, n * D);
        RmsNorm.Forward(ln, w.Rstd, x, P(normOffset, D), n, D, eps);
        Linear.Forward(logits, ln, P(headOffset, V * D), n, D, V);
    }

    private static void AddInPlace(Span<float> acc, ReadOnlySpan<float> b, int n)
    {
        for (int i = 0; i < n; i++)
        {
            acc[i] += b[i];
        }
    }

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
        public Work(DecodeModel m, int capacity, int contextCapacity)
        {
            Capacity = capacity;
            ContextCapacity = contextCapacity;
            int C = capacity, I = m.config.IntermediateSize;
            Positions = new int[C];
            X = new float[C * m.D];
            Ln = new float[C * m.D];
            Tmp = new float[C * m.D];
            Rstd = new float[C];
            Qa = new float[C * m.Rq];
            QaN = new float[C * m.Rq];
            Q = new float[C * m.HQ];
            CRaw = new float[C * m.R];
            CN = new float[C * m.R];
            Kpe = new float[C * m.Dr];
            AttnOut = new float[C * m.H * m.Dv];
            QCat = new float[contextCapacity == 0 ? C * m.H * m.RD : 0];
            Ctx = new float[contextCapacity == 0 ? C * m.H * m.R : 0];
            bool anyDense = Enumerable.Range(0, m.L).Any(l => !m.layerSlots[l].IsMoe);
            bool anyMoe = Enumerable.Range(0, m.L).Any(l => m.layerSlots[l].IsMoe);
            G = new float[anyDense ? C * I : 0];
            U = new float[anyDense ? C * I : 0];
            Hd = new float[anyDense ? C * I : 0];
            Moe = anyMoe ? new MoeBlock(m.config, C, trainable: false) : null;
            CtxLatent = new float[contextCapacity * m.R];
            CtxKpe = new float[contextCapacity * m.Dr];
            CtxKv = new float[contextCapacity * m.HKV];
            HeadMax = new float[m.L * m.H];
            PrefillScores = new float[contextCapacity == 0 ? 0 : ModelThreads.Workers][];
            PrefillProbs = new float[contextCapacity == 0 ? 0 : ModelThreads.Workers][];
            for (int w = 0; w < PrefillScores.Length; w++)
            {
                PrefillScores[w] = new float[(long)C * contextCapacity];
                PrefillProbs[w] = new float[(long)C * contextCapacity];
            }
        }

        public int Capacity { get; }
        public int ContextCapacity { get; }
        public int[] Positions { get; }     // [C]
        public float[] X { get; }           // [C, D] residual stream
        public float[] Ln { get; }          // [C, D] normed
        public float[] Tmp { get; }         // [C, D] sub-block output
        public float[] Rstd { get; }        // [C] (not kept)
        public float[] Qa { get; }          // [C, Rq]
        public float[] QaN { get; }         // [C, Rq]
        public float[] Q { get; }           // [C, H*(Dn+Dr)] roped
        public float[] CRaw { get; }        // [C, R]
        public float[] CN { get; }          // [C, R] normed latent (cached)
        public float[] Kpe { get; }         // [C, Dr] roped (cached)
        public float[] AttnOut { get; }     // [C, H*Dv]
        public float[] QCat { get; }        // decode [C, H, R+Dr] absorbed query | q_pe
        public float[] Ctx { get; }         // decode [C, H, R] Σ p c
        public float[] G { get; }           // [C, I]
        public float[] U { get; }           // [C, I]
        public float[] Hd { get; }          // [C, I]
        public MoeBlock? Moe { get; }
        public float[] CtxLatent { get; }   // prefill [ctx, R]
        public float[] CtxKpe { get; }      // prefill [ctx, Dr]
        public float[] CtxKv { get; }       // prefill [ctx, H*(Dn+Dv)]
        public float[] HeadMax { get; }     // [L, H]
        public float[][] PrefillScores { get; } // per worker [C, ctx]
        public float[][] PrefillProbs { get; }  // per worker [C, ctx]
    }
}
