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
/// The MLA arithmetic is <see cref="MlaAttention"/>'s, shared with training (<see cref="MlaProjection"/> for q, c
/// and k_pe, <see cref="MlaAttention.AttendPlain"/> for prefill, MlaAttention.Absorbed.cs for decode); this class
/// holds the cache traffic, the rest of each layer, and the buffers and state of a call (DecodeModel.Work.cs).
/// Not thread-safe: one caller at a time. Letters: B sequences, D hidden, V vocab, H heads, Dn/Dr/Dv head dims,
/// R kv_lora_rank, Rq q_lora_rank, I dense hidden.
/// </summary>
public sealed partial class DecodeModel
{
    private readonly ModelConfig config;
    private readonly MlaDims mla;
    private readonly KvBlockPool pool;
    private readonly ParameterLayout layout;
    private readonly LayerSlots[] layerSlots;
    private readonly int D, V, L, maxPos;
    private readonly float eps, scale;
    private readonly int embedOffset, normOffset, headOffset;
    private readonly float[] ropeCos, ropeSin;
    private readonly float[] own;                // this model's buffer: LoadWeights copies into it
    private float[] parameters;                  // what the kernels read: own (as loaded, or rounded to bf16 values), or a shared buffer
    private ushort[] experts16 = [];             // Bf16: the routed experts' rows for decode's small products (same offsets)
    private readonly float[] maxLogits;          // [L, H] of the last prefill
    private readonly Projector project = new(fewRowParts: true);
    private readonly DecodeWork decode;
    private PrefillWork? prefill;
    private readonly SequenceCache[] oneSeq = new SequenceCache[1];
    private readonly int[] oneCount = new int[1];
    private bool loaded;

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

        mla = config.Mla;
        if (pool.Mla.R != mla.R || pool.Mla.Dr != mla.Dr || pool.Config.NumHiddenLayers != config.NumHiddenLayers)
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
        maxPos = config.MaxPositionEmbeddings;
        eps = config.RmsNormEps;
        scale = config.SoftmaxScale;
        MaxBatch = maxBatch;
        layerSlots = LayerSlots.All(layout);
        (embedOffset, normOffset, headOffset) = TrunkSlots.From(layout);
        (ropeCos, ropeSin) = Rope.BuildTables(mla.Dr, maxPos, config.RopeTheta);
        own = parameters = layout.NewBuffer();
        maxLogits = new float[L * mla.H];
        decode = new DecodeWork(this, maxBatch);
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

        parameters.CopyTo(own, 0);
        this.parameters = own;
        if (Precision == WeightPrecision.Bf16)
        {
            RoundToBf16();
        }

        loaded = true;
    }

    /// <summary>
    /// Reads <paramref name="parameters"/> in place from now on, without a copy: the swap of a new version is a reference
    /// change. The caller must not change the buffer until the next <see cref="LoadWeights"/> or share. Returns false (and
    /// changes nothing) where this model keeps its own transformed copy: with <see cref="WeightPrecision.Bf16"/> it rounds
    /// and packs the weights, so the caller copies with <see cref="LoadWeights"/>.
    /// </summary>
    public bool TryShareWeights(float[] parameters)
    {
        if (parameters.Length != own.Length)
        {
            throw new ArgumentException(
                $"parameter buffer has {parameters.Length} floats; this model's layout needs {own.Length}", nameof(parameters));
        }

        if (Precision != WeightPrecision.F32)
        {
            return false;
        }

        this.parameters = parameters;
        loaded = true;
        return true;
    }

    /// <summary>Rounds the loaded weights (not the routing biases) to bf16 and packs the routed experts' rows.</summary>
    private void RoundToBf16()
    {
        if (experts16.Length == 0)
        {
            experts16 = new ushort[own.Length];
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

        var w = PrefillWorkFor(Math.Max(total, B), ctxTotal, scoreMax);
        w.Begin(seqs, counts);
        Embed(w, tokens);
        for (int l = 0; l < L; l++)
        {
            PrefillLayer(w, l);
        }

        w.End();
        for (int b = 0; b < B; b++)
        {
            seqs[b].Length = w.Start[b] + w.Count[b];
        }

        long th = StepProfile.Now;
        if (!allLogits.IsEmpty)
        {
            Head(w, w.X.AsSpan(0, total * D), total, allLogits);
            for (int b = 0; b < B; b++)
            {
                allLogits.Slice((w.Row0[b] + w.Count[b] - 1) * V, V).CopyTo(lastLogits.Slice(b * V, V));
            }
        }
        else
        {
            for (int b = 0; b < B; b++)
            {
                w.X.AsSpan((w.Row0[b] + w.Count[b] - 1) * D, D).CopyTo(w.Tmp.AsSpan(b * D, D));
            }

            Head(w, w.Tmp.AsSpan(0, B * D), B, lastLogits);
        }

        Profile.Lap(ModelPhase.HeadAndLoss, th);
    }

    /// <summary>
    /// One layer of a prefill: q, c and k_pe of every new token; c and k_pe appended to each sequence's cache;
    /// [k_nope | v] expanded from every cached latent of each sequence; attention per (sequence, head); o_proj
    /// and the FFN.
    /// </summary>
    private void PrefillLayer(PrefillWork w, int l)
    {
        var s = layerSlots[l];
        int B = w.Seqs.Count, H = mla.H;
        long t0 = StepProfile.Now;
        InputNormAndProject(w, s, w.Rows);
        for (int b = 0; b < B; b++)
        {
            WriteCache(w.Seqs[b], w.Proj, l, w.Count[b], w.Start[b], row: w.Row0[b]);
            ReadCache(w.Seqs[b], l, w.Start[b] + w.Count[b], w.CtxLatent.AsSpan(w.Ctx0[b] * mla.R), w.CtxKpe.AsSpan(w.Ctx0[b] * mla.Dr));
        }

        // [k_nope | v] = c Wkvbᵀ over every sequence's positions [0, ctx)
        project.Forward(w.CtxKv, w.CtxLatent, parameters, s.KvB, w.ContextRows, mla.R, mla.HKV);
        t0 = Profile.Lap(ModelPhase.AttentionProjections, t0);
        ForkJoinPool.Shared.For(B * H, w.AttendHead);
        MlaAttention.ReduceMaxLogits(maxLogits.AsSpan(l * H, H), w.MaxLogits, B, H);
        Profile.Lap(ModelPhase.AttentionCore, t0);
        FinishLayer(w, s, w.Rows);
    }

    /// <summary>The prefill buffers, grown (never shrunk) to hold this call.</summary>
    private PrefillWork PrefillWorkFor(int rows, int contextRows, long scores)
    {
        var w = prefill;
        if (w is null || w.Capacity < rows || w.ContextCapacity < contextRows || w.ScoreCapacity < scores)
        {
            prefill = null;
            w = prefill = new PrefillWork(this, Math.Max(rows, w?.Capacity ?? 0), Math.Max(contextRows, w?.ContextCapacity ?? 0),
                Math.Max(scores, w?.ScoreCapacity ?? 0));
        }

        return w;
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
        for (int b = 0; b < B; b++)
        {
            CheckRoom(seqs[b], seqs[b].Length + 1, $"decode (sequence {b})");
        }

        var w = decode;
        w.Begin(seqs);
        Embed(w, tokens);
        for (int l = 0; l < L; l++)
        {
            DecodeLayer(w, l);
        }

        w.End();
        long th = StepProfile.Now;
        Head(w, w.X.AsSpan(0, B * D), B, logits);
        // only now: a step that throws leaves every sequence as it was (its cache slot at Length is rewritten on a retry)
        for (int b = 0; b < B; b++)
        {
            seqs[b].Length++;
        }

        Profile.Lap(ModelPhase.HeadAndLoss, th);
    }

    /// <summary>
    /// One layer of a decode step: q, c and k_pe of each sequence's new token, c and k_pe appended to its cache,
    /// the absorbed attention (<see cref="MlaAttention.AbsorbQueries"/>, per sequence
    /// <see cref="MlaAttention.AttendLatents"/>, <see cref="MlaAttention.AbsorbedOutput"/>), o_proj and the FFN.
    /// </summary>
    private void DecodeLayer(DecodeWork w, int l)
    {
        var s = layerSlots[l];
        int B = w.Seqs.Count;
        long t0 = StepProfile.Now;
        InputNormAndProject(w, s, B);
        t0 = Profile.Lap(ModelPhase.AttentionProjections, t0);
        for (int b = 0; b < B; b++)
        {
            WriteCache(w.Seqs[b], w.Proj, l, 1, w.Seqs[b].Length, row: b);
        }

        var wkvb = P(s.KvB, mla.HKV * mla.R);
        MlaAttention.AbsorbQueries(w.QCat, w.Proj.Q, wkvb, B, mla);
        w.Layer = l;
        ForkJoinPool.Shared.For(B, w.AttendSequence, parallel: w.AttentionWork >= 1 << 18);
        MlaAttention.AbsorbedOutput(w.AttnOut, w.Ctx, wkvb, B, mla);
        Profile.Lap(ModelPhase.AttentionCore, t0);
        FinishLayer(w, s, B);
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

    /// <summary>ln1 of the n rows of X, then their q (roped), c (normed) and k_pe (roped) at w.Positions.</summary>
    private void InputNormAndProject(Work w, LayerSlots s, int n)
    {
        RmsNorm.Forward(w.Ln, w.Rstd, w.X, P(s.InputNorm, D), n, D, eps);
        w.Proj.Forward(w.Ln, w.Positions.AsSpan(0, n), n, parameters, s, project);
    }

    /// <summary>Appends rows [row, row + n) of c and k_pe at positions start.. of one sequence's cache.</summary>
    private void WriteCache(SequenceCache seq, MlaProjection proj, int layer, int n, int start, int row)
    {
        int bt = pool.BlockTokens, R = mla.R, Dr = mla.Dr;
        for (int i = 0; i < n; i++)
        {
            int pos = start + i;
            var dst = pool.LayerRows(seq.Blocks[pos / bt], layer).Slice(pos % bt * mla.RD, mla.RD);
            proj.CN.AsSpan((row + i) * R, R).CopyTo(dst);
            proj.Kpe.AsSpan((row + i) * Dr, Dr).CopyTo(dst[R..]);
        }
    }

    /// <summary>c [count, R] and k_pe [count, Dr] of one sequence's first count cached tokens.</summary>
    private void ReadCache(SequenceCache seq, int layer, int count, Span<float> latent, Span<float> kpe)
    {
        int bt = pool.BlockTokens, R = mla.R, Dr = mla.Dr;
        for (int pos = 0; pos < count; pos++)
        {
            var src = pool.LayerRows(seq.Blocks[pos / bt], layer).Slice(pos % bt * mla.RD, mla.RD);
            src[..R].CopyTo(latent.Slice(pos * R, R));
            src[R..].CopyTo(kpe.Slice(pos * Dr, Dr));
        }
    }

    /// <summary>o_proj and residual, then the FFN sub-block; X holds the layer's output after.</summary>
    private void FinishLayer(Work w, LayerSlots s, int n)
    {
        long t0 = StepProfile.Now;
        project.Forward(w.Tmp, w.AttnOut, parameters, s.O, n, mla.HDv, D);
        AddInPlace(w.X, w.Tmp, n * D);
        RmsNorm.Forward(w.Ln, w.Rstd, w.X, P(s.PostNorm, D), n, D, eps);
        t0 = Profile.Lap(ModelPhase.AttentionProjections, t0);
        if (s.IsMoe)
        {
            w.Moe!.Forward(w.Tmp, w.Ln, parameters, s, n, experts16);
            RecordRouting(w, s);
        }
        else
        {
            int I = config.IntermediateSize;
            // SwiGluMlp.Forward's products, each cut over the fork/join pool (the same bits)
            project.Forward(w.G, w.Ln, parameters, s.MlpGate, n, D, I);
            project.Forward(w.U, w.Ln, parameters, s.MlpUp, n, D, I);
            SwiGlu.Forward(w.Hd, w.G, w.U, n * I);
            project.Forward(w.Tmp, w.Hd, parameters, s.MlpDown, n, I, D);
            Profile.Lap(ModelPhase.DenseMlp, t0);
        }

        AddInPlace(w.X, w.Tmp, n * D);
    }

    /// <summary>Writes the MoE layer's chosen experts into the routing log of each sequence of the call that keeps one.</summary>
    private void RecordRouting(Work w, LayerSlots s)
    {
        int K = config.NumExpertsPerTok;
        var selected = w.Moe!.Selected;
        for (int b = 0; b < w.Seqs.Count; b++)
        {
            if (w.Seqs[b].Routing is not { } log)
            {
                continue;
            }

            var (first, count) = w.RowsOf(b);
            for (int r = first; r < first + count; r++)
            {
                selected.Slice(r * K, K).CopyTo(log.At(w.Positions[r]).Slice(s.MoeIndex * K, K));
            }
        }
    }

    /// <summary>
    /// logits[n, V] of final hidden states x[n, D]: the final norm into w.Ln, the head product into w.Logits (see
    /// <see cref="Projector"/>: the same bits for any n), copied out.
    /// </summary>
    private void Head(Work w, ReadOnlySpan<float> x, int n, Span<float> logits)
    {
        RmsNorm.Forward(w.Ln.AsSpan(0, n * D), w.Rstd.AsSpan(0, n), x, P(normOffset, D), n, D, eps);
        project.Forward(w.Logits, w.Ln, parameters, headOffset, n, D, V);
        w.Logits.AsSpan(0, n * V).CopyTo(logits);
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
}
