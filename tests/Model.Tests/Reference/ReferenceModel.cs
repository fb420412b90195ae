namespace K2RL.Model.Tests.Reference;

/// <summary>
/// A plain, separately written double-precision implementation of the K2 decoder (SPEC §1) used as the oracle
/// for <see cref="K2Model"/>: one token at a time, explicit loops, no kernels and no code shared with the fast
/// path (only the layout's names and offsets, to read the same flat buffer). Forward and a hand-written backward,
/// llm.c style. Letters: N tokens, D hidden, V vocab, H heads, Dn/Dr/Dv head dims, R kv_lora_rank, Rq
/// q_lora_rank, E experts, K per token, F expert hidden.
/// </summary>
public sealed class ReferenceModel
{
    private readonly ModelConfig c;
    private readonly Dictionary<string, double[]> w = new(StringComparer.Ordinal);
    private readonly int D, V, L, H, Dn, Dr, Dv, R, E, K, F;
    private readonly double scale;

    public ReferenceModel(ModelConfig config, ParameterLayout layout, float[] parameters)
    {
        c = config;
        foreach (var t in layout.Tensors)
        {
            var src = t.Of(parameters);
            var dst = new double[src.Length];
            for (int i = 0; i < dst.Length; i++)
            {
                dst[i] = src[i];
            }

            w[t.Name] = dst;
            Grad[t.Name] = new double[src.Length];
        }

        D = c.HiddenSize;
        V = c.VocabSize;
        L = c.NumHiddenLayers;
        H = c.NumAttentionHeads;
        Dn = c.QkNopeHeadDim;
        Dr = c.QkRopeHeadDim;
        Dv = c.VHeadDim;
        R = c.KvLoraRank;
        E = c.NRoutedExperts;
        K = c.NumExpertsPerTok;
        F = c.MoeIntermediateSize;
        scale = 1.0 / Math.Sqrt(Dn + Dr);
    }

    public Dictionary<string, double[]> Grad { get; } = new(StringComparer.Ordinal);

    public double[][] Logits { get; private set; } = [];   // [N][V]

    public double Loss { get; private set; }

    public double[] TokenLoss { get; private set; } = [];  // [N]

    public double[,] MaxLogit { get; private set; } = new double[0, 0];  // [L, H]

    public int[,] ExpertCounts { get; private set; } = new int[0, 0];    // [L, E]

    public int[][][] Chosen { get; private set; } = [];     // [L][N][K] (MoE layers)

    /// <summary>
    /// Double-checks: is any top-K choice (or kept group) within <paramref name="margin"/> of being flipped?
    /// </summary>
    public double MinRoutingMargin { get; private set; } = double.PositiveInfinity;

    private double[] W(string name) => w[name];

    private double[] G(string name) => Grad[name];

    /// <summary>Changes one parameter (for finite differences).</summary>
    public void Set(string name, int index, double value) => w[name][index] = value;

    public double Get(string name, int index) => w[name][index];

    // ------------------------------------------------------------------ helpers

    private static double[] MatVec(double[] m, int rowOffset, int rows, int cols, double[] x)
    {
        var y = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double s = 0;
            for (int k = 0; k < cols; k++)
            {
                s += m[(rowOffset + r) * cols + k] * x[k];
            }

            y[r] = s;
        }

        return y;
    }

    /// <summary>dx[k] += Σ_r m[r, k] dy[r]; dm[r, k] += dy[r] x[k].</summary>
    private static void MatVecBack(double[] dx, double[] dm, double[] m, int rowOffset, int rows, int cols, double[] dy, double[] x)
    {
        for (int r = 0; r < rows; r++)
        {
            double g = dy[r];
            for (int k = 0; k < cols; k++)
            {
                dx[k] += m[(rowOffset + r) * cols + k] * g;
                dm[(rowOffset + r) * cols + k] += g * x[k];
            }
        }
    }

    private double[] Norm(double[] x, double[] weight, out double rstd)
    {
        double ss = 0;
        foreach (double v in x)
        {
            ss += v * v;
        }

        rstd = 1.0 / Math.Sqrt(ss / x.Length + c.RmsNormEps);
        var y = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            y[i] = x[i] * rstd * weight[i];
        }

        return y;
    }

    /// <summary>dx[i] += ...; dweight[i] += dy_i x_i rstd.</summary>
    private static void NormBack(double[] dx, double[] dweight, double[] dy, double[] x, double[] weight, double rstd)
    {
        int n = x.Length;
        double dot = 0;
        for (int i = 0; i < n; i++)
        {
            dot += dy[i] * weight[i] * x[i];
        }

        for (int i = 0; i < n; i++)
        {
            dweight[i] += dy[i] * x[i] * rstd;
            dx[i] += dy[i] * weight[i] * rstd - x[i] * rstd * rstd * rstd * dot / n;
        }
    }

    /// <summary>Rotates adjacent pairs of v[offset .. offset+Dr) by pos · θ^(−2i/Dr) (sign −1: back).</summary>
    private void Rotate(double[] v, int offset, int pos, int sign)
    {
        for (int i = 0; i < Dr / 2; i++)
        {
            double angle = pos * Math.Pow(c.RopeTheta, -2.0 * i / Dr);
            double cs = Math.Cos(angle), sn = sign * Math.Sin(angle);
            double a = v[offset + 2 * i], b = v[offset + 2 * i + 1];
            v[offset + 2 * i] = a * cs - b * sn;
            v[offset + 2 * i + 1] = a * sn + b * cs;
        }
    }

    private static double Sigmoid(double x) => 1.0 / (1.0 + Math.Exp(-x));

    // ------------------------------------------------------------------ the model

    private sealed class Ffn
    {
        public double[] Gate = [], Up = [], Hid = [];      // dense or shared
        public double[] S = [];                             // router sigmoid scores [E]
        public int[] Chosen = [];                           // [K]
        public double[] Mix = [];                           // [K]
        public double Denom;
        public double[][] EGate = [], EUp = [], EHid = [], EOut = []; // per chosen slot
    }

    private sealed class Layer
    {
        public double[][] X = [], H1 = [], Qa = [], QaN = [], Q = [], C = [], CN = [], Kpe = [], Kv = [], O = [], Mid = [], H2 = [];
        public double[] Rstd1 = [], RstdQa = [], RstdKv = [], Rstd2 = [];
        public double[][][] P = [];   // [B*H][i][j<=i]
        public Ffn[] Ffn = [];
    }

    /// <summary>
    /// Forward and backward. dLoss weights per token: null for the mean over targets ≥ 0.
    /// </summary>
    public void Run(int[] tokens, int[] targets, int B, int T, double[]? tokenWeights = null, bool backward = true)
    {
        int N = B * T;
        int HQ = H * (Dn + Dr), HKV = H * (Dn + Dv);
        bool qLora = c.QLoraRank is not null;
        int Rq = c.QLoraRank ?? 0;
        MaxLogit = new double[L, H];
        ExpertCounts = new int[L, Math.Max(E, 1)];
        Chosen = new int[L][][];
        MinRoutingMargin = double.PositiveInfinity;
        var layers = new Layer[L];
        var x = new double[N][];
        for (int n = 0; n < N; n++)
        {
            x[n] = new double[D];
            Array.Copy(W("model.embed_tokens.weight"), tokens[n] * D, x[n], 0, D);
        }

        for (int l = 0; l < L; l++)
        {
            string p = $"model.layers.{l}.";
            var ly = layers[l] = new Layer
            {
                X = x, H1 = new double[N][], Qa = new double[N][], QaN = new double[N][], Q = new double[N][],
                C = new double[N][], CN = new double[N][], Kpe = new double[N][], Kv = new double[N][], O = new double[N][],
                Mid = new double[N][], H2 = new double[N][], Rstd1 = new double[N], RstdQa = new double[N],
                RstdKv = new double[N], Rstd2 = new double[N], P = new double[B * H][][], Ffn = new Ffn[N],
            };
            for (int n = 0; n < N; n++)
            {
                int pos = n % T;
                ly.H1[n] = Norm(x[n], W(p + "input_layernorm.weight"), out ly.Rstd1[n]);
                if (qLora)
                {
                    ly.Qa[n] = MatVec(W(p + "self_attn.q_a_proj.weight"), 0, Rq, D, ly.H1[n]);
                    ly.QaN[n] = Norm(ly.Qa[n], W(p + "self_attn.q_a_layernorm.weight"), out ly.RstdQa[n]);
                    ly.Q[n] = MatVec(W(p + "self_attn.q_b_proj.weight"), 0, HQ, Rq, ly.QaN[n]);
                }
                else
                {
                    ly.Q[n] = MatVec(W(p + "self_attn.q_proj.weight"), 0, HQ, D, ly.H1[n]);
                }

                for (int h = 0; h < H; h++)
                {
                    Rotate(ly.Q[n], h * (Dn + Dr) + Dn, pos, +1);
                }

                ly.C[n] = MatVec(W(p + "self_attn.kv_a_proj_with_mqa.weight"), 0, R, D, ly.H1[n]);
                ly.Kpe[n] = MatVec(W(p + "self_attn.kv_a_proj_with_mqa.weight"), R, Dr, D, ly.H1[n]);
                Rotate(ly.Kpe[n], 0, pos, +1);
                ly.CN[n] = Norm(ly.C[n], W(p + "self_attn.kv_a_layernorm.weight"), out ly.RstdKv[n]);
                ly.Kv[n] = MatVec(W(p + "self_attn.kv_b_proj.weight"), 0, HKV, R, ly.CN[n]);
                ly.O[n] = new double[H * Dv];
            }

            for (int b = 0; b < B; b++)
            {
                for (int h = 0; h < H; h++)
                {
                    var probs = ly.P[b * H + h] = new double[T][];
                    for (int i = 0; i < T; i++)
                    {
                        var qi = ly.Q[b * T + i];
                        var row = probs[i] = new double[i + 1];
                        double max = double.NegativeInfinity;
                        for (int j = 0; j <= i; j++)
                        {
                            var kvj = ly.Kv[b * T + j];
                            var kpj = ly.Kpe[b * T + j];
                            double s = 0;
                            for (int d = 0; d < Dn; d++)
                            {
                                s += qi[h * (Dn + Dr) + d] * kvj[h * (Dn + Dv) + d];
                            }

                            for (int d = 0; d < Dr; d++)
                            {
                                s += qi[h * (Dn + Dr) + Dn + d] * kpj[d];
                            }

                            row[j] = s * scale;
                            max = Math.Max(max, row[j]);
                        }

                        MaxLogit[l, h] = b == 0 && i == 0 ? max : Math.Max(MaxLogit[l, h], max);
                        double sum = 0;
                        for (int j = 0; j <= i; j++)
                        {
                            row[j] = Math.Exp(row[j] - max);
                            sum += row[j];
                        }

                        for (int j = 0; j <= i; j++)
                        {
                            row[j] /= sum;
                            var kvj = ly.Kv[b * T + j];
                            for (int d = 0; d < Dv; d++)
                            {
                                ly.O[b * T + i][h * Dv + d] += row[j] * kvj[h * (Dn + Dv) + Dn + d];
                            }
                        }
                    }
                }
            }

            var next = new double[N][];
            Chosen[l] = new int[N][];
            bool moe = c.IsMoeLayer(l);
            for (int n = 0; n < N; n++)
            {
                var attn = MatVec(W(p + "self_attn.o_proj.weight"), 0, D, H * Dv, ly.O[n]);
                ly.Mid[n] = new double[D];
                for (int i = 0; i < D; i++)
                {
                    ly.Mid[n][i] = x[n][i] + attn[i];
                }

                ly.H2[n] = Norm(ly.Mid[n], W(p + "post_attention_layernorm.weight"), out ly.Rstd2[n]);
                var f = ly.Ffn[n] = new Ffn();
                var y = moe ? MoeForward(p, ly.H2[n], f, l) : Mlp(p + "mlp.", c.IntermediateSize, ly.H2[n], f);
                Chosen[l][n] = f.Chosen;
                next[n] = new double[D];
                for (int i = 0; i < D; i++)
                {
                    next[n][i] = ly.Mid[n][i] + y[i];
                }
            }

            x = next;
        }

        // head
        var xf = new double[N][];
        var rstdF = new double[N];
        Logits = new double[N][];
        TokenLoss = new double[N];
        int count = 0;
        double total = 0;
        string head = c.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
        for (int n = 0; n < N; n++)
        {
            xf[n] = Norm(x[n], W("model.norm.weight"), out rstdF[n]);
            Logits[n] = MatVec(W(head), 0, V, D, xf[n]);
            if (targets[n] >= 0)
            {
                double max = Logits[n].Max();
                double lse = max + Math.Log(Logits[n].Sum(v => Math.Exp(v - max)));
                TokenLoss[n] = lse - Logits[n][targets[n]];
                total += TokenLoss[n];
                count++;
            }
        }

        Loss = tokenWeights is null
            ? (count == 0 ? 0 : total / count)
            : Enumerable.Range(0, N).Where(n => targets[n] >= 0).Sum(n => tokenWeights[n] * TokenLoss[n]);
        if (!backward)
        {
            return;
        }

        foreach (var g in Grad.Values)
        {
            Array.Clear(g);
        }

        // ---------------------------------------------------------- backward
        var dx = new double[N][];
        for (int n = 0; n < N; n++)
        {
            dx[n] = new double[D];
            if (targets[n] < 0)
            {
                continue;
            }

            double wt = tokenWeights is null ? 1.0 / count : tokenWeights[n];
            double max = Logits[n].Max();
            double sum = Logits[n].Sum(v => Math.Exp(v - max));
            var dlog = new double[V];
            for (int v = 0; v < V; v++)
            {
                dlog[v] = (Math.Exp(Logits[n][v] - max) / sum - (v == targets[n] ? 1 : 0)) * wt;
            }

            var dxf = new double[D];
            MatVecBack(dxf, G(head), W(head), 0, V, D, dlog, xf[n]);
            NormBack(dx[n], G("model.norm.weight"), dxf, x[n], W("model.norm.weight"), rstdF[n]);
        }

        for (int l = L - 1; l >= 0; l--)
        {
            string p = $"model.layers.{l}.";
            var ly = layers[l];
            bool moe = c.IsMoeLayer(l);
            // FFN
            var dMid = new double[N][];
            for (int n = 0; n < N; n++)
            {
                var dh2 = new double[D];
                if (moe)
                {
                    MoeBackward(p, dh2, dx[n], ly.H2[n], ly.Ffn[n]);
                }
                else
                {
                    MlpBackward(p + "mlp.", c.IntermediateSize, dh2, dx[n], ly.H2[n], ly.Ffn[n]);
                }

                dMid[n] = (double[])dx[n].Clone();
                NormBack(dMid[n], G(p + "post_attention_layernorm.weight"), dh2, ly.Mid[n], W(p + "post_attention_layernorm.weight"), ly.Rstd2[n]);
            }

            // attention
            var dO = new double[N][];
            var dQ = new double[N][];
            var dKv = new double[N][];
            var dKpe = new double[N][];
            for (int n = 0; n < N; n++)
            {
                dO[n] = new double[H * Dv];
                MatVecBack(dO[n], G(p + "self_attn.o_proj.weight"), W(p + "self_attn.o_proj.weight"), 0, D, H * Dv, dMid[n], ly.O[n]);
                dQ[n] = new double[HQ];
                dKv[n] = new double[HKV];
                dKpe[n] = new double[Dr];
            }

            for (int b = 0; b < B; b++)
            {
                for (int h = 0; h < H; h++)
                {
                    for (int i = 0; i < T; i++)
                    {
                        var row = ly.P[b * H + h][i];
                        var dp = new double[i + 1];
                        double dot = 0;
                        for (int j = 0; j <= i; j++)
                        {
                            var kvj = ly.Kv[b * T + j];
                            for (int d = 0; d < Dv; d++)
                            {
                                dp[j] += dO[b * T + i][h * Dv + d] * kvj[h * (Dn + Dv) + Dn + d];
                                dKv[b * T + j][h * (Dn + Dv) + Dn + d] += row[j] * dO[b * T + i][h * Dv + d];
                            }

                            dot += row[j] * dp[j];
                        }

                        var qi = ly.Q[b * T + i];
                        for (int j = 0; j <= i; j++)
                        {
                            double ds = row[j] * (dp[j] - dot) * scale;
                            var kvj = ly.Kv[b * T + j];
                            for (int d = 0; d < Dn; d++)
                            {
                                dQ[b * T + i][h * (Dn + Dr) + d] += ds * kvj[h * (Dn + Dv) + d];
                                dKv[b * T + j][h * (Dn + Dv) + d] += ds * qi[h * (Dn + Dr) + d];
                            }

                            for (int d = 0; d < Dr; d++)
                            {
                                dQ[b * T + i][h * (Dn + Dr) + Dn + d] += ds * ly.Kpe[b * T + j][d];
                                dKpe[b * T + j][d] += ds * qi[h * (Dn + Dr) + Dn + d];
                            }
                        }
                    }
                }
            }

            for (int n = 0; n < N; n++)
            {
                int pos = n % T;
                for (int h = 0; h < H; h++)
                {
                    Rotate(dQ[n], h * (Dn + Dr) + Dn, pos, -1);
                }

                Rotate(dKpe[n], 0, pos, -1);
                var dcn = new double[R];
                MatVecBack(dcn, G(p + "self_attn.kv_b_proj.weight"), W(p + "self_attn.kv_b_proj.weight"), 0, HKV, R, dKv[n], ly.CN[n]);
                var dcraw = new double[R];
                NormBack(dcraw, G(p + "self_attn.kv_a_layernorm.weight"), dcn, ly.C[n], W(p + "self_attn.kv_a_layernorm.weight"), ly.RstdKv[n]);
                var dh1 = new double[D];
                MatVecBack(dh1, G(p + "self_attn.kv_a_proj_with_mqa.weight"), W(p + "self_attn.kv_a_proj_with_mqa.weight"), 0, R, D, dcraw, ly.H1[n]);
                MatVecBack(dh1, G(p + "self_attn.kv_a_proj_with_mqa.weight"), W(p + "self_attn.kv_a_proj_with_mqa.weight"), R, Dr, D, dKpe[n], ly.H1[n]);
                if (qLora)
                {
                    var dqan = new double[Rq];
                    MatVecBack(dqan, G(p + "self_attn.q_b_proj.weight"), W(p + "self_attn.q_b_proj.weight"), 0, HQ, Rq, dQ[n], ly.QaN[n]);
                    var dqa = new double[Rq];
                    NormBack(dqa, G(p + "self_attn.q_a_layernorm.weight"), dqan, ly.Qa[n], W(p + "self_attn.q_a_layernorm.weight"), ly.RstdQa[n]);
                    MatVecBack(dh1, G(p + "self_attn.q_a_proj.weight"), W(p + "self_attn.q_a_proj.weight"), 0, Rq, D, dqa, ly.H1[n]);
                }
                else
                {
                    MatVecBack(dh1, G(p + "self_attn.q_proj.weight"), W(p + "self_attn.q_proj.weight"), 0, HQ, D, dQ[n], ly.H1[n]);
                }

                dx[n] = (double[])dMid[n].Clone();
                NormBack(dx[n], G(p + "input_layernorm.weight"), dh1, ly.X[n], W(p + "input_layernorm.weight"), ly.Rstd1[n]);
            }
        }

        var dEmb = G("model.embed_tokens.weight");
        for (int n = 0; n < N; n++)
        {
            for (int i = 0; i < D; i++)
            {
                dEmb[tokens[n] * D + i] += dx[n][i];
            }
        }
    }

    // ------------------------------------------------------------------ FFN pieces

    private double[] Mlp(string prefix, int hidden, double[] x, Ffn f)
    {
        f.Gate = MatVec(W(prefix + "gate_proj.weight"), 0, hidden, D, x);
        f.Up = MatVec(W(prefix + "up_proj.weight"), 0, hidden, D, x);
        f.Hid = new double[hidden];
        for (int i = 0; i < hidden; i++)
        {
            f.Hid[i] = f.Gate[i] * Sigmoid(f.Gate[i]) * f.Up[i];
        }

        return MatVec(W(prefix + "down_proj.weight"), 0, D, hidden, f.Hid);
    }

    private void MlpBackward(string prefix, int hidden, double[] dx, double[] dy, double[] x, Ffn f) =>
        MlpBackward(prefix, hidden, dx, dy, x, f.Gate, f.Up, f.Hid);

    private void MlpBackward(string prefix, int hidden, double[] dx, double[] dy, double[] x, double[] gate, double[] up, double[] hid)
    {
        var dHid = new double[hidden];
        MatVecBack(dHid, G(prefix + "down_proj.weight"), W(prefix + "down_proj.weight"), 0, D, hidden, dy, hid);
        var dGate = new double[hidden];
        var dUp = new double[hidden];
        for (int i = 0; i < hidden; i++)
        {
            double sg = Sigmoid(gate[i]);
            dUp[i] = dHid[i] * gate[i] * sg;
            dGate[i] = dHid[i] * up[i] * (sg + gate[i] * sg * (1 - sg));
        }

        MatVecBack(dx, G(prefix + "gate_proj.weight"), W(prefix + "gate_proj.weight"), 0, hidden, D, dGate, x);
        MatVecBack(dx, G(prefix + "up_proj.weight"), W(prefix + "up_proj.weight"), 0, hidden, D, dUp, x);
    }

    /// <summary>Indices sorted by value descending, ties by index ascending.</summary>
    private static int[] Ranked(double[] v) =>
        Enumerable.Range(0, v.Length).OrderByDescending(i => v[i]).ThenBy(i => i).ToArray();

    private double[] MoeForward(string p, double[] x, Ffn f, int layer)
    {
        var logits = MatVec(W(p + "mlp.gate.weight"), 0, E, D, x);
        f.S = logits.Select(Sigmoid).ToArray();
        var bias = W(p + "mlp.gate.e_score_correction_bias");
        var choice = f.S.Select((s, e) => s + bias[e]).ToArray();
        int groups = c.NGroup;
        if (groups > 1)
        {
            int size = E / groups;
            var gscore = new double[groups];
            for (int g = 0; g < groups; g++)
            {
                var top = choice.Skip(g * size).Take(size).OrderByDescending(v => v).Take(2).ToArray();
                gscore[g] = top.Sum();
            }

            var rankedGroups = Ranked(gscore);
            if (c.TopkGroup < groups)
            {
                MinRoutingMargin = Math.Min(MinRoutingMargin, gscore[rankedGroups[c.TopkGroup - 1]] - gscore[rankedGroups[c.TopkGroup]]);
            }

            var kept = rankedGroups.Take(c.TopkGroup).ToHashSet();
            for (int e = 0; e < E; e++)
            {
                if (!kept.Contains(e / size))
                {
                    choice[e] = double.NegativeInfinity;
                }
            }
        }

        var ranked = Ranked(choice);
        f.Chosen = ranked.Take(K).ToArray();
        if (K < E && !double.IsNegativeInfinity(choice[ranked[K]]))
        {
            MinRoutingMargin = Math.Min(MinRoutingMargin, choice[ranked[K - 1]] - choice[ranked[K]]);
        }

        double sum = f.Chosen.Sum(e => f.S[e]);
        f.Denom = c.NormTopkProb ? sum + 1e-20 : 1.0;
        f.Mix = f.Chosen.Select(e => c.RoutedScalingFactor * f.S[e] / f.Denom).ToArray();
        var y = new double[D];
        f.EGate = new double[K][];
        f.EUp = new double[K][];
        f.EHid = new double[K][];
        f.EOut = new double[K][];
        for (int k = 0; k < K; k++)
        {
            int e = f.Chosen[k];
            ExpertCounts[layer, e]++;
            var ef = new Ffn();
            f.EOut[k] = Mlp($"{p}mlp.experts.{e}.", F, x, ef);
            f.EGate[k] = ef.Gate;
            f.EUp[k] = ef.Up;
            f.EHid[k] = ef.Hid;
            for (int i = 0; i < D; i++)
            {
                y[i] += f.Mix[k] * f.EOut[k][i];
            }
        }

        if (c.NSharedExperts > 0)
        {
            var ys = Mlp(p + "mlp.shared_experts.", F * c.NSharedExperts, x, f);
            for (int i = 0; i < D; i++)
            {
                y[i] += ys[i];
            }
        }

        return y;
    }

    private void MoeBackward(string p, double[] dx, double[] dy, double[] x, Ffn f)
    {
        if (c.NSharedExperts > 0)
        {
            MlpBackward(p + "mlp.shared_experts.", F * c.NSharedExperts, dx, dy, x, f);
        }

        var dMix = new double[K];
        for (int k = 0; k < K; k++)
        {
            int e = f.Chosen[k];
            var dye = new double[D];
            for (int i = 0; i < D; i++)
            {
                dMix[k] += dy[i] * f.EOut[k][i];
                dye[i] = f.Mix[k] * dy[i];
            }

            MlpBackward($"{p}mlp.experts.{e}.", F, dx, dye, x, f.EGate[k], f.EUp[k], f.EHid[k]);
        }

        // mix_k = rsf * s_k / Σ_j s_j  →  ds_j
        var dLogit = new double[E];
        double rsf = c.RoutedScalingFactor;
        for (int k = 0; k < K; k++)
        {
            int e = f.Chosen[k];
            double ds;
            if (c.NormTopkProb)
            {
                ds = 0;
                for (int m = 0; m < K; m++)
                {
                    double dmds = (m == k ? 1.0 / f.Denom : 0) - f.S[f.Chosen[m]] / (f.Denom * f.Denom);
                    ds += dMix[m] * rsf * dmds;
                }
            }
            else
            {
                ds = dMix[k] * rsf;
            }

            dLogit[e] = ds * f.S[e] * (1 - f.S[e]);
        }

        MatVecBack(dx, G(p + "mlp.gate.weight"), W(p + "mlp.gate.weight"), 0, E, D, dLogit, x);
    }
}
