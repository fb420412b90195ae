using System.Numerics.Tensors;
using K2RL.Common;
using K2RL.Kernels;
using K2RL.Model.Layers;

namespace K2RL.Model;

/// <summary>
/// The Kimi-K2 / DeepSeek-V3 decoder (SPEC §1) for training: explicit forward and backward over one flat
/// parameter buffer and one flat gradient buffer sharing the <see cref="ParameterLayout"/>.
/// Per layer: x += MLA(RMSNorm_in(x)); x += FFN(RMSNorm_post(x)) where FFN is a dense SwiGLU for layers
/// below first_k_dense_replace and the routed MoE otherwise; then model.norm, lm_head, cross-entropy.
/// Activation buffers are allocated once per (B, T) shape and reused; a step allocates nothing after that.
/// Parameter gradients accumulate (+=) into <see cref="Gradients"/>; call <see cref="ZeroGradients"/> between
/// steps.
/// Letters: B batch, T sequence, N = B·T, D hidden, V vocab, L layers, H heads, E experts.
/// </summary>
public sealed class K2Model
{
    private readonly int D, V, L, H, E;
    private readonly LayerSlots[] layerSlots;
    private readonly int embedOffset, normOffset, headOffset;
    private readonly float[] ropeCos, ropeSin;
    private readonly float[] maxLogits;     // [L, H]
    private readonly int[] expertCounts;    // [L, E]
    private Activations? acts;
    private int[] replayScratch = [];
    private readonly StepProfile profile = new();
    private bool haveForward;

    public K2Model(ModelConfig config)
    {
        config.Validate();
        if (config.RopeScaling is not null)
        {
            throw new ConfigException(
                $"rope_scaling \"{config.RopeScaling.Type}\" (YaRN) is not implemented by K2RL's model; remove it from the config");
        }

        Config = config;
        Layout = new ParameterLayout(config);
        Parameters = Layout.NewBuffer();
        Gradients = Layout.NewBuffer();
        D = config.HiddenSize;
        V = config.VocabSize;
        L = config.NumHiddenLayers;
        H = config.NumAttentionHeads;
        E = config.NRoutedExperts;
        layerSlots = LayerSlots.All(Layout);
        (embedOffset, normOffset, headOffset) = TrunkSlots.From(Layout);
        (ropeCos, ropeSin) = Rope.BuildTables(config.QkRopeHeadDim, config.MaxPositionEmbeddings, config.RopeTheta);
        maxLogits = new float[L * H];
        expertCounts = new int[L * Math.Max(E, 0)];
    }

    public ModelConfig Config { get; }

    public ParameterLayout Layout { get; }

    /// <summary>All parameters, [Layout.TotalLength] floats.</summary>
    public float[] Parameters { get; }

    /// <summary>Parameter gradients, same layout; accumulated by the backward passes.</summary>
    public float[] Gradients { get; }

    /// <summary>Logits [B*T, V] of the last forward.</summary>
    public ReadOnlySpan<float> Logits => acts is null ? default : acts.Logits.AsSpan(0, acts.N * V);

    /// <summary>Per-token cross-entropy −log p(target) [B*T] of the last forward (0 where target &lt; 0).</summary>
    public ReadOnlySpan<float> TokenLosses => acts is null ? default : acts.Losses.AsSpan(0, acts.N);

    /// <summary>[L, H]: per layer and head, the max pre-softmax logit (scale included) over the last forward's batch.</summary>
    public ReadOnlySpan<float> MaxLogits => maxLogits;

    /// <summary>[L, E]: tokens routed to each expert in the last forward (dense layers: 0).</summary>
    public ReadOnlySpan<int> ExpertCounts => expertCounts;

    public void ZeroGradients() => Array.Clear(Gradients);

    /// <summary>Time per phase, accumulated over forward and backward calls until reset.</summary>
    public StepProfile Profile => profile;

    /// <summary>
    /// Deterministic initialization: RMSNorm weights 1, every matrix N(0, 0.02²) (embedding and lm_head
    /// included), correction bias 0, padding 0. Same seed, same weights on every machine.
    /// </summary>
    public void InitializeWeights(ulong seed)
    {
        Array.Clear(Parameters);
        var rng = new GaussianStream(seed);
        foreach (var t in Layout.Tensors)
        {
            var span = t.Of(Parameters);
            if (t.IsRoutingBias)
            {
                span.Clear();
            }
            else if (!t.IsMatrix)
            {
                span.Fill(1f);
            }
            else
            {
                for (int i = 0; i < span.Length; i++)
                {
                    span[i] = 0.02f * rng.NextGaussian();
                }
            }
        }
    }

    /// <summary>
    /// Weight of DeepSeek-V3's sequence-wise balance loss (SPEC §1 item 5; 0.0001 when on, 0 = off). When
    /// positive, every forward computes it (<see cref="BalanceLoss"/>) and every backward adds its gradient
    /// to the routers': the objective is then the returned loss plus <see cref="BalanceLoss"/>.
    /// </summary>
    public float SequenceBalanceAlpha
    {
        get => sequenceBalanceAlpha;
        set
        {
            if (!float.IsFinite(value) || value < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "the sequence balance weight must be finite and ≥ 0");
            }

            sequenceBalanceAlpha = value;
        }
    }

    private float sequenceBalanceAlpha;

    /// <summary>
    /// The sequence-wise balance loss of the last forward: alpha · Σ over MoE layers of the mean over the B
    /// sequences of Σ_i f_i P_i (0 when <see cref="SequenceBalanceAlpha"/> is 0). Not part of the returned loss.
    /// </summary>
    public float BalanceLoss { get; private set; }

    /// <summary>[B·T, K] the experts each token of the last forward went to in MoE layer <paramref name="layer"/>, best first.</summary>
    public ReadOnlySpan<int> ChosenExperts(int layer) =>
        acts?.Moe[layer] is { } moe ? moe.Selected[..(acts.N * Config.NumExpertsPerTok)]
            : throw new InvalidOperationException($"layer {layer} is not an MoE layer, or there was no forward yet");

    /// <summary>
    /// Tokens × MoE layers of the last forward whose replayed routing differs from the experts this model's own
    /// scores pick (0 without a replay).
    /// </summary>
    public int ReplayFlips { get; private set; }

    /// <summary>
    /// Forward only. Returns the mean cross-entropy over targets ≥ 0 (0 when there are none).
    /// <paramref name="routing"/>, when given, is a routing record [B·T, <see cref="ModelConfig.RoutingStride"/>]
    /// (per token, per MoE layer, K expert ids as the rollout engine used them; a token whose layer slice starts
    /// with −1 routes by its own scores): routing replay, so the trainer's forward takes the experts the sampler took.
    /// </summary>
    public float Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int B, int T, ReadOnlySpan<int> routing = default)
    {
        var a = Prepare(tokens, targets, B, T);
        if (!routing.IsEmpty && routing.Length != a.N * Config.RoutingStride)
        {
            throw new ArgumentException($"a routing record for B*T = {a.N} tokens holds {a.N}×{Config.RoutingStride} expert ids, got {routing.Length}", nameof(routing));
        }

        RunForward(a, tokens, targets, routing);
        double balance = 0;
        if (sequenceBalanceAlpha > 0)
        {
            foreach (var moe in a.Moe)
            {
                balance += moe?.SequenceBalanceLoss(B, T, sequenceBalanceAlpha / B) ?? 0;
            }
        }

        BalanceLoss = (float)balance;
        int count = 0;
        double sum = 0;
        for (int n = 0; n < a.N; n++)
        {
            if (targets[n] >= 0)
            {
                count++;
                sum += a.Losses[n];
            }
        }

        haveForward = true;
        return count == 0 ? 0f : (float)(sum / count);
    }

    /// <summary>Forward and backward of the mean cross-entropy; Gradients += d loss / d parameters. Returns the loss.</summary>
    public float ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int B, int T)
    {
        float loss = Forward(tokens, targets, B, T);
        var a = acts!;
        int count = 0;
        for (int n = 0; n < a.N; n++)
        {
            count += targets[n] >= 0 ? 1 : 0;
        }

        float w = count == 0 ? 0f : 1f / count;
        for (int n = 0; n < a.N; n++)
        {
            a.DLoss[n] = targets[n] >= 0 ? w : 0f;
        }

        RunBackward(a, tokens, targets);
        return loss;
    }

    /// <summary>
    /// The weighted per-token objective for RL: loss = Σ_t w[t] · CE_t = −Σ_t w[t] log p(target_t) over
    /// targets ≥ 0, so dL/dlogits_t = (softmax − onehot) · w[t]. Gradients +=; returns that weighted loss.
    /// Per-token log-probabilities are −<see cref="TokenLosses"/>.
    /// </summary>
    public float ForwardBackwardWeighted(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets,
        ReadOnlySpan<float> tokenWeights, int B, int T)
    {
        Forward(tokens, targets, B, T);
        return BackwardWeighted(tokens, targets, tokenWeights);
    }

    /// <summary>
    /// Backward of the weighted objective (see <see cref="ForwardBackwardWeighted"/>) through the activations of
    /// the last <see cref="Forward"/>, which must have been called with the same tokens and targets (lets an RL
    /// trainer read the log-probabilities first and then choose the weights without a second forward).
    /// </summary>
    public float BackwardWeighted(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, ReadOnlySpan<float> tokenWeights)
    {
        var a = acts ?? throw new InvalidOperationException("BackwardWeighted needs a Forward first");
        if (!haveForward)
        {
            throw new InvalidOperationException("BackwardWeighted needs a Forward first");
        }

        if (tokens.Length < a.N || targets.Length < a.N || tokenWeights.Length < a.N)
        {
            throw new ArgumentException(
                $"tokens ({tokens.Length}), targets ({targets.Length}) and weights ({tokenWeights.Length}) must each hold B*T = {a.N}");
        }

        double loss = 0;
        for (int n = 0; n < a.N; n++)
        {
            float w = targets[n] >= 0 ? tokenWeights[n] : 0f;
            a.DLoss[n] = w;
            loss += w * a.Losses[n];
        }

        RunBackward(a, tokens, targets);
        return (float)loss;
    }

    // ------------------------------------------------------------------ forward / backward

    private Activations Prepare(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int B, int T)
    {
        if (B <= 0 || T <= 0)
        {
            throw new ArgumentException($"batch shape must be positive, got B={B}, T={T}");
        }

        if (T > Config.MaxPositionEmbeddings)
        {
            throw new ArgumentException($"sequence length T={T} exceeds max_position_embeddings={Config.MaxPositionEmbeddings}", nameof(T));
        }

        int N = B * T;
        if (tokens.Length != N || targets.Length != N)
        {
            throw new ArgumentException($"tokens ({tokens.Length}) and targets ({targets.Length}) must each hold B*T = {B}*{T} = {N} ids");
        }

        for (int n = 0; n < N; n++)
        {
            if ((uint)tokens[n] >= (uint)V)
            {
                throw new ArgumentException($"token id {tokens[n]} at position {n} (batch row {n / T}, t {n % T}) is outside the vocabulary [0, {V})", nameof(tokens));
            }

            if (targets[n] >= V)
            {
                throw new ArgumentException($"target id {targets[n]} at position {n} (batch row {n / T}, t {n % T}) is outside the vocabulary [0, {V})", nameof(targets));
            }
        }

        if (acts is null || acts.B != B || acts.T != T)
        {
            acts = null; // let the old shape's buffers go before allocating the new ones
            acts = new Activations(Config, layerSlots, B, T, ropeCos, ropeSin, profile);
        }

        haveForward = false;
        return acts;
    }

    private void RunForward(Activations a, ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, ReadOnlySpan<int> routing)
    {
        ReplayFlips = 0;
        int N = a.N;
        var p = Parameters;
        long t0 = StepProfile.Now;
        // embedding
        var x0 = a.Resid[0].AsSpan(0, N * D);
        var embed = p.AsSpan(embedOffset, V * D);
        for (int n = 0; n < N; n++)
        {
            embed.Slice(tokens[n] * D, D).CopyTo(x0.Slice(n * D, D));
        }

        t0 = profile.Lap(ModelPhase.Embedding, t0);
        for (int l = 0; l < L; l++)
        {
            var s = layerSlots[l];
            var x = a.Resid[l];
            var mid = a.Mid[l];
            var outp = a.Resid[l + 1];
            // attention sub-block: mid = x + MLA(norm(x))
            RmsNorm.Forward(a.Ln1[l], a.Rstd1[l], x, p.AsSpan(s.InputNorm, D), N, D, Config.RmsNormEps);
            t0 = profile.Lap(ModelPhase.NormsAndResidual, t0);
            a.Attention[l].Forward(a.Tmp, a.Ln1[l], p, s);
            t0 = StepProfile.Now;
            Add(mid, x, a.Tmp, N * D);
            a.Attention[l].ReduceMaxLogits(maxLogits.AsSpan(l * H, H));
            // FFN sub-block: out = mid + FFN(norm(mid))
            RmsNorm.Forward(a.Ln2[l], a.Rstd2[l], mid, p.AsSpan(s.PostNorm, D), N, D, Config.RmsNormEps);
            t0 = profile.Lap(ModelPhase.NormsAndResidual, t0);
            if (s.IsMoe)
            {
                var moe = a.Moe[l]!;
                moe.Forward(a.Tmp, a.Ln2[l], p, s, N, replay: routing.IsEmpty ? default : LayerRouting(routing, s.MoeIndex, N));
                ReplayFlips += moe.ReplayFlips;
                moe.Counts.CopyTo(expertCounts.AsSpan(l * E, E));
                t0 = StepProfile.Now;
            }
            else
            {
                int I = Config.IntermediateSize;
                SwiGluMlp.Forward(a.Tmp, a.DenseG[l], a.DenseU[l], a.DenseH[l], a.Ln2[l], p.AsSpan(s.MlpGate, I * D),
                    p.AsSpan(s.MlpUp, I * D), p.AsSpan(s.MlpDown, D * I), N, D, I, gu: a.DenseGU,
                    wGateUp: s.MlpUp == s.MlpGate + I * D ? p.AsSpan(s.MlpGate, 2 * I * D) : default);
                if (E > 0)
                {
                    expertCounts.AsSpan(l * E, E).Clear();
                }

                t0 = profile.Lap(ModelPhase.DenseMlp, t0);
            }

            Add(outp, mid, a.Tmp, N * D);
            t0 = profile.Lap(ModelPhase.NormsAndResidual, t0);
        }

        RmsNorm.Forward(a.FinalNorm, a.RstdF, a.Resid[L], p.AsSpan(normOffset, D), N, D, Config.RmsNormEps);
        Linear.Forward(a.Logits, a.FinalNorm, p.AsSpan(headOffset, V * D), N, D, V);
        CrossEntropy.Forward(a.Losses, a.Lse, a.Logits, targets, N, V);
        profile.Lap(ModelPhase.HeadAndLoss, t0);
    }

    /// <summary>One MoE layer's [N, K] slice of a routing record [N, RoutingStride].</summary>
    private ReadOnlySpan<int> LayerRouting(ReadOnlySpan<int> routing, int moeIndex, int N)
    {
        int K = Config.NumExpertsPerTok, stride = Config.RoutingStride;
        if (replayScratch.Length < N * K)
        {
            replayScratch = new int[N * K];
        }

        for (int n = 0; n < N; n++)
        {
            routing.Slice(n * stride + moeIndex * K, K).CopyTo(replayScratch.AsSpan(n * K, K));
        }

        return replayScratch.AsSpan(0, N * K);
    }

    private void RunBackward(Activations a, ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets)
    {
        int N = a.N;
        var p = Parameters;
        var g = Gradients;
        long t0 = StepProfile.Now;
        CrossEntropy.Backward(a.DLogits, a.DLoss, a.Logits, a.Lse, targets, N, V);
        Linear.Backward(a.DTmp, g.AsSpan(headOffset, V * D), a.DLogits, a.FinalNorm, p.AsSpan(headOffset, V * D), N, D, V);
        // dX: gradient of the residual stream, walked from the top
        RmsNorm.Backward(a.DX, g.AsSpan(normOffset, D), a.DTmp, a.Resid[L], p.AsSpan(normOffset, D), a.RstdF, N, D);
        t0 = profile.Lap(ModelPhase.HeadAndLoss, t0);
        for (int l = L - 1; l >= 0; l--)
        {
            var s = layerSlots[l];
            // FFN sub-block: dMid = dX + norm_post'ᵀ FFN'ᵀ dX
            if (s.IsMoe)
            {
                a.Moe[l]!.Backward(a.DLn, g, a.DX, a.Ln2[l], N);
                t0 = StepProfile.Now;
            }
            else
            {
                int I = Config.IntermediateSize;
                SwiGluMlp.Backward(a.DLn, g.AsSpan(s.MlpGate, I * D), g.AsSpan(s.MlpUp, I * D), g.AsSpan(s.MlpDown, D * I),
                    a.DDenseH, a.DDenseG, a.DDenseU, a.DX, a.Ln2[l], a.DenseG[l], a.DenseU[l], a.DenseH[l],
                    p.AsSpan(s.MlpGate, I * D), p.AsSpan(s.MlpUp, I * D), p.AsSpan(s.MlpDown, D * I), N, D, I);
                t0 = profile.Lap(ModelPhase.DenseMlp, t0);
            }

            RmsNorm.Backward(a.DTmp, g.AsSpan(s.PostNorm, D), a.DLn, a.Mid[l], p.AsSpan(s.PostNorm, D), a.Rstd2[l], N, D);
            AddInPlace(a.DX, a.DTmp, N * D);
            t0 = profile.Lap(ModelPhase.NormsAndResidual, t0);
            // attention sub-block: dX = dMid + norm_inᵀ MLAᵀ dMid
            a.Attention[l].Backward(a.DLn, g, a.DX, a.Ln1[l]);
            t0 = StepProfile.Now;
            RmsNorm.Backward(a.DTmp, g.AsSpan(s.InputNorm, D), a.DLn, a.Resid[l], p.AsSpan(s.InputNorm, D), a.Rstd1[l], N, D);
            AddInPlace(a.DX, a.DTmp, N * D);
            t0 = profile.Lap(ModelPhase.NormsAndResidual, t0);
        }

        // embedding: scatter-add by token, in position order
        var dEmbed = g.AsSpan(embedOffset, V * D);
        for (int n = 0; n < N; n++)
        {
            var row = dEmbed.Slice(tokens[n] * D, D);
            TensorPrimitives.Add(row, a.DX.AsSpan(n * D, D), row);
        }

        profile.Lap(ModelPhase.Embedding, t0);
    }

    private static void Add(Span<float> output, ReadOnlySpan<float> a, ReadOnlySpan<float> b, int n) =>
        TensorPrimitives.Add(a[..n], b[..n], output[..n]);

    private static void AddInPlace(Span<float> acc, ReadOnlySpan<float> b, int n) =>
        TensorPrimitives.Add(acc[..n], b[..n], acc[..n]);

    /// <summary>Every buffer of one (B, T) shape: saved activations per layer and the backward's scratch.</summary>
    private sealed class Activations
    {
        public Activations(ModelConfig c, LayerSlots[] slots, int batch, int seq, float[] cos, float[] sin, StepProfile profile)
        {
            B = batch;
            T = seq;
            N = batch * seq;
            int D = c.HiddenSize, V = c.VocabSize, L = c.NumHiddenLayers, I = c.IntermediateSize;
            Positions = new int[N];
            for (int n = 0; n < N; n++)
            {
                Positions[n] = n % T;
            }

            Resid = Alloc(L + 1, N * D);
            Mid = Alloc(L, N * D);
            Ln1 = Alloc(L, N * D);
            Rstd1 = Alloc(L, N);
            Ln2 = Alloc(L, N * D);
            Rstd2 = Alloc(L, N);
            Attention = new MlaAttention[L];
            Moe = new MoeBlock?[L];
            DenseG = new float[L][];
            DenseU = new float[L][];
            DenseH = new float[L][];
            bool anyDense = false;
            for (int l = 0; l < L; l++)
            {
                Attention[l] = new MlaAttention(c, B, T, cos, sin, Positions, profile);
                if (slots[l].IsMoe)
                {
                    Moe[l] = new MoeBlock(c, N, trainable: true, profile);
                    DenseG[l] = DenseU[l] = DenseH[l] = [];
                }
                else
                {
                    anyDense = true;
                    DenseG[l] = new float[N * I];
                    DenseU[l] = new float[N * I];
                    DenseH[l] = new float[N * I];
                }
            }

            FinalNorm = new float[N * D];
            RstdF = new float[N];
            Logits = new float[(long)N * V <= int.MaxValue ? N * V : throw new ArgumentException($"logits [{N}, {V}] exceed one array")];
            Losses = new float[N];
            Lse = new float[N];
            DLoss = new float[N];
            DLogits = new float[N * V];
            Tmp = new float[N * D];
            DX = new float[N * D];
            DTmp = new float[N * D];
            DLn = new float[N * D];
            DDenseH = new float[anyDense ? N * I : 0];
            DDenseG = new float[anyDense ? N * I : 0];
            DDenseU = new float[anyDense ? N * I : 0];
            DenseGU = new float[anyDense ? N * 2 * I : 0];
        }

        public int B { get; }
        public int T { get; }
        public int N { get; }
        public int[] Positions { get; }          // [N] position of each token within its row
        public float[][] Resid { get; }          // [L+1][N, D] residual stream entering layer l (L: the final one)
        public float[][] Mid { get; }            // [L][N, D] residual after attention
        public float[][] Ln1 { get; }            // [L][N, D] input_layernorm output
        public float[][] Rstd1 { get; }          // [L][N]
        public float[][] Ln2 { get; }            // [L][N, D] post_attention_layernorm output
        public float[][] Rstd2 { get; }          // [L][N]
        public MlaAttention[] Attention { get; } // per layer, with its own saved activations
        public MoeBlock?[] Moe { get; }          // per MoE layer
        public float[][] DenseG { get; }         // [L][N, I] dense layers only
        public float[][] DenseU { get; }         // [L][N, I]
        public float[][] DenseH { get; }         // [L][N, I]
        public float[] FinalNorm { get; }        // [N, D]
        public float[] RstdF { get; }            // [N]
        public float[] Logits { get; }           // [N, V]
        public float[] Losses { get; }           // [N]
        public float[] Lse { get; }              // [N]
        public float[] DLoss { get; }            // [N] d objective / d per-token loss
        public float[] DLogits { get; }          // [N, V]
        public float[] Tmp { get; }              // [N, D] sub-block output
        public float[] DX { get; }               // [N, D] residual-stream gradient
        public float[] DTmp { get; }             // [N, D]
        public float[] DLn { get; }              // [N, D] gradient at a norm's output
        public float[] DDenseH { get; }          // [N, I]
        public float[] DDenseG { get; }          // [N, I]
        public float[] DDenseU { get; }          // [N, I]
        public float[] DenseGU { get; }          // [N, 2I] fused gate|up scratch

        private static float[][] Alloc(int count, int length)
        {
            var r = new float[count][];
            for (int i = 0; i < count; i++)
            {
                r[i] = new float[length];
            }

            return r;
        }
    }
}

/// <summary>Box–Muller over a <see cref="SplitMix64"/> stream: a tiny deterministic generator for weight initialization.</summary>
internal sealed class GaussianStream(ulong seed)
{
    private SplitMix64 stream = new(seed);
    private float spare;
    private bool hasSpare;

    /// <summary>Uniform in (0, 1].</summary>
    public double NextDouble() => ((stream.NextUInt64() >> 11) + 1) * (1.0 / (1UL << 53));

    public float NextGaussian()
    {
        if (hasSpare)
        {
            hasSpare = false;
            return spare;
        }

        double u1 = NextDouble(), u2 = NextDouble();
        double r = Math.Sqrt(-2.0 * Math.Log(u1));
        spare = (float)(r * Math.Sin(2 * Math.PI * u2));
        hasSpare = true;
        return (float)(r * Math.Cos(2 * Math.PI * u2));
    }
}
