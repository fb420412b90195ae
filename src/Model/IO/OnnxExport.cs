using Google.Protobuf;
using K2RL.Common;
using K2RL.Protos.Onnx;
using DataType = K2RL.Protos.Onnx.TensorProto.Types.DataType;

namespace K2RL.Model.IO;

/// <summary>
/// Writes the decoder as an ONNX model (opset <see cref="Opset"/>, standard ops only) with MLA's compressed cache as
/// inputs and outputs, so one graph serves prefill (past length 0) and decoding (one new token per step) under
/// ONNX Runtime or any other ONNX engine:
///   inputs   input_ids [batch, sequence] int64; past_latent.{l} [batch, past, R]; past_key_rope.{l} [batch, past, Dr]
///   outputs  logits [batch, sequence, V]; present_latent.{l} [batch, past+sequence, R]; present_key_rope.{l} [.., Dr]
/// The cache is the one K2RL's decoder keeps (SPEC §1 item 6): per token and layer, the normed latent c and the
/// roped k_pe. Positions are past..past+sequence−1 for every row of the batch (the rows share one length; no
/// padding). Attention runs the plain path over the whole cache (k_nope and v expanded from c by kv_b_proj each
/// call), so a decode step costs O(past) in kv_b_proj: the same logits as weight absorption, simpler ops.
/// The MoE is exported densely: every routed expert runs on every token and its output is weighted by the routing
/// weight, which is 0 for the experts the router did not choose. Exact (an unchosen expert adds 0 × a finite
/// value), E/K times the routed-expert FLOPs of the sparse form: meant for small models (k2-nano: 32/4 = 8×).
/// Selection uses the router scores plus e_score_correction_bias (group-limited when n_group &gt; 1), the mixing
/// weights the unbiased scores, as in <see cref="Layers.MoeBlock"/>. RoPE cos/sin are initializers [maxPos, Dr/2]
/// gathered at the positions. Letters: B batch, S new tokens, P past, T = P+S, D hidden, V vocab, H heads,
/// Dn/Dr/Dv head dims, Rq q_lora_rank, R kv_lora_rank, E experts, K experts per token, F expert hidden, I dense hidden.
/// </summary>
public static class OnnxExport
{
    /// <summary>The ai.onnx operator set the graph uses.</summary>
    public const int Opset = 17;

    /// <summary>The ONNX IR version of opset 17 (ONNX 1.12).</summary>
    public const long IrVersion = 8;

    /// <summary>Protobuf's limit on one message: larger models would need ONNX's external-data files (not written).</summary>
    public const long MaxModelBytes = int.MaxValue;

    public const string InputIds = "input_ids";
    public const string Logits = "logits";

    public static string PastLatent(int layer) => $"past_latent.{layer}";

    public static string PastKeyRope(int layer) => $"past_key_rope.{layer}";

    public static string PresentLatent(int layer) => $"present_latent.{layer}";

    public static string PresentKeyRope(int layer) => $"present_key_rope.{layer}";

    /// <summary>Writes <paramref name="path"/> (atomically); returns its size in bytes.</summary>
    public static long Save(string path, ModelConfig config, float[] parameters)
    {
        var model = Build(config, parameters);
        long size = model.CalculateSize();
        AtomicFile.Write(path, stream => model.WriteTo(stream));
        return size;
    }

    /// <summary>The ONNX model of <paramref name="config"/> with <paramref name="parameters"/> (a layout-sized buffer).</summary>
    public static ModelProto Build(ModelConfig config, float[] parameters)
    {
        config.Validate();
        if (config.RopeScaling is not null)
        {
            throw new ConfigException("rope_scaling (YaRN) is not implemented by K2RL's model, so it is not exported either");
        }

        var layout = new ParameterLayout(config);
        if (parameters.LongLength != layout.TotalLength)
        {
            throw new ArgumentException($"parameters hold {parameters.LongLength} floats, the layout {layout.TotalLength}", nameof(parameters));
        }

        long bytes = 4 * (layout.ParameterCount + (long)config.HiddenSize * config.VocabSize);
        if (bytes > MaxModelBytes)
        {
            throw new K2Exception(
                $"the model's weights take {bytes:N0} bytes, above protobuf's 2 GiB limit on one ONNX file; K2RL does not write ONNX external data");
        }

        var graph = new Exporter(config, layout, parameters).Run();
        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "k2rl",
            ProducerVersion = typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "0",
            Graph = graph,
            DocString = "Kimi-K2 / DeepSeek-V3 decoder exported by K2RL: logits and MLA's compressed cache (docs/ONNX.md)",
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        model.MetadataProps.Add(new StringStringEntryProto { Key = "k2rl.config", Value = config.ToJson() });
        model.MetadataProps.Add(new StringStringEntryProto { Key = "k2rl.cache", Value = "latent [batch, past, kv_lora_rank] + key_rope [batch, past, qk_rope_head_dim] per layer" });
        return model;
    }

    /// <summary>One export: the graph builder, the weights, and the tensors shared by every layer.</summary>
    private sealed class Exporter(ModelConfig c, ParameterLayout layout, float[] p)
    {
        private readonly OnnxGraphBuilder g = new();
        private readonly int D = c.HiddenSize, H = c.NumAttentionHeads, Dn = c.QkNopeHeadDim, Dr = c.QkRopeHeadDim,
            Dv = c.VHeadDim, R = c.KvLoraRank, E = c.NRoutedExperts, K = c.NumExpertsPerTok, F = c.MoeIntermediateSize;

        private string future = "", cosQ = "", sinQ = "", cosK = "", sinK = "", negInf = "", zero = "", one = "";

        public GraphProto Run()
        {
            var graph = g.Graph;
            graph.Name = "k2rl_decoder";
            graph.Input.Add(OnnxGraphBuilder.Value(InputIds, DataType.Int64, "batch", "sequence"));
            for (int l = 0; l < c.NumHiddenLayers; l++)
            {
                graph.Input.Add(OnnxGraphBuilder.Value(PastLatent(l), DataType.Float, "batch", "past_sequence", R));
                graph.Input.Add(OnnxGraphBuilder.Value(PastKeyRope(l), DataType.Float, "batch", "past_sequence", Dr));
            }

            graph.Output.Add(OnnxGraphBuilder.Value(Logits, DataType.Float, "batch", "sequence", c.VocabSize));
            for (int l = 0; l < c.NumHiddenLayers; l++)
            {
                graph.Output.Add(OnnxGraphBuilder.Value(PresentLatent(l), DataType.Float, "batch", "total_sequence", R));
                graph.Output.Add(OnnxGraphBuilder.Value(PresentKeyRope(l), DataType.Float, "batch", "total_sequence", Dr));
            }

            Positions();
            // x [B, S, D] = embed[input_ids]
            string x = g.Op("Gather", [Weight("model.embed_tokens.weight", transpose: false), InputIds]);
            for (int l = 0; l < c.NumHiddenLayers; l++)
            {
                string pre = $"model.layers.{l}.";
                string mid = g.Op("Add", [x, Attention(l, RmsNorm(x, pre + "input_layernorm.weight"))]);
                string normed = RmsNorm(mid, pre + "post_attention_layernorm.weight");
                string ffn = c.IsMoeLayer(l) ? Moe(pre, normed) : SwiGlu(normed, pre + "mlp.gate_proj.weight", pre + "mlp.up_proj.weight", pre + "mlp.down_proj.weight");
                x = g.Op("Add", [mid, ffn]);
            }

            string head = c.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
            g.Op("MatMul", [RmsNorm(x, "model.norm.weight"), Weight(head)], Logits);
            return graph;
        }

        /// <summary>
        /// The positions of the new tokens, P..T−1 with P the cache length, their RoPE rows, and the causal mask
        /// future [S, T] (true where key j is after query i, i.e. j &gt; P + i).
        /// </summary>
        private void Positions()
        {
            zero = g.Longs([0], scalar: true);
            one = g.Longs([1], scalar: true);
            negInf = g.Scalar(float.NegativeInfinity);
            string past = g.Op("Gather", [g.Op("Shape", [PastLatent(0)]), one], null, ("axis", 0L));
            string seq = g.Op("Gather", [g.Op("Shape", [InputIds]), one], null, ("axis", 0L));
            string total = g.Op("Add", [past, seq]);
            string qPos = g.Op("Range", [past, total, one]);                                  // [S]
            string kPos = g.Op("Range", [zero, total, one]);                                  // [T]
            future = g.Op("Greater", [g.Op("Unsqueeze", [kPos, g.Longs([0])]), g.Op("Unsqueeze", [qPos, g.Longs([1])])]);
            var (cos, sin) = Kernels.Rope.BuildTables(Dr, c.MaxPositionEmbeddings, c.RopeTheta);
            string cosTable = g.Floats("rope.cos", cos, c.MaxPositionEmbeddings, Dr / 2);
            string sinTable = g.Floats("rope.sin", sin, c.MaxPositionEmbeddings, Dr / 2);
            cosK = g.Op("Gather", [cosTable, qPos]);                                          // [S, Dr/2]
            sinK = g.Op("Gather", [sinTable, qPos]);
            cosQ = g.Op("Unsqueeze", [cosK, g.Longs([1])]);                                   // [S, 1, Dr/2]
            sinQ = g.Op("Unsqueeze", [sinK, g.Longs([1])]);
        }

        /// <summary>MLA for layer l on the normed x [B, S, D]; appends to the cache outputs; returns [B, S, D].</summary>
        private string Attention(int l, string x)
        {
            string a = $"model.layers.{l}.self_attn.";
            string q = c.QLoraRank is not null
                ? MatMul(RmsNorm(MatMul(x, a + "q_a_proj.weight"), a + "q_a_layernorm.weight"), a + "q_b_proj.weight")
                : MatMul(x, a + "q_proj.weight");
            var qs = g.Ops("Split", [Reshape(q, 0, 0, H, Dn + Dr), g.Longs([Dn, Dr])], [null, null], ("axis", -1L));
            string qPe = Rope(qs[1], cosQ, sinQ, 0, 0, H);                                     // [B, S, H, Dr]
            var kva = g.Ops("Split", [MatMul(x, a + "kv_a_proj_with_mqa.weight"), g.Longs([R, Dr])], [null, null], ("axis", -1L));
            string latent = RmsNorm(kva[0], a + "kv_a_layernorm.weight");                       // [B, S, R]
            string kPe = Rope(kva[1], cosK, sinK, 0, 0);                                       // [B, S, Dr]
            string cAll = g.Op("Concat", [PastLatent(l), latent], PresentLatent(l), ("axis", 1L));     // [B, T, R]
            string kPeAll = g.Op("Concat", [PastKeyRope(l), kPe], PresentKeyRope(l), ("axis", 1L));    // [B, T, Dr]
            var kv = g.Ops("Split", [Reshape(MatMul(cAll, a + "kv_b_proj.weight"), 0, 0, H, Dn + Dv), g.Longs([Dn, Dv])],
                [null, null], ("axis", -1L));                                                  // [B, T, H, Dn], [B, T, H, Dv]
            // scores [B, H, S, T] = q_nope k_nopeᵀ + q_pe k_peᵀ (k_pe shared by the heads)
            string nope = g.Op("MatMul", [Transpose(qs[0], 0, 2, 1, 3), Transpose(kv[0], 0, 2, 3, 1)]);
            string rope = g.Op("MatMul", [Transpose(qPe, 0, 2, 1, 3), g.Op("Unsqueeze", [Transpose(kPeAll, 0, 2, 1), g.Longs([1])])]);
            string scores = g.Op("Mul", [g.Op("Add", [nope, rope]), g.Scalar(c.SoftmaxScale)]);
            string probs = g.Op("Softmax", [g.Op("Where", [future, negInf, scores])], null, ("axis", -1L));
            string o = g.Op("MatMul", [probs, Transpose(kv[1], 0, 2, 1, 3)]);                // [B, H, S, Dv]
            return MatMul(Reshape(Transpose(o, 0, 2, 1, 3), 0, 0, H * Dv), a + "o_proj.weight");
        }

        /// <summary>The routed experts (dense, weighted by the routing mask) plus the shared expert, on x [B, S, D].</summary>
        private string Moe(string pre, string x)
        {
            string m = pre + "mlp.";
            string scores = g.Op("Sigmoid", [MatMul(x, m + "gate.weight")]);                    // [B, S, E]
            string choice = g.Op("Add", [scores, Weight(m + "gate.e_score_correction_bias", transpose: false)]);
            if (c.NGroup > 1)
            {
                choice = MaskGroups(choice);
            }

            var top = g.Ops("TopK", [choice, g.Longs([K])], [null, null], ("axis", -1L));       // indices [B, S, K]
            string chosen = g.Op("GatherElements", [scores, top[1]], null, ("axis", -1L));
            string mix = c.NormTopkProb
                ? g.Op("Div", [chosen, g.Op("Add", [g.Op("ReduceSum", [chosen, g.Longs([-1])], null, ("keepdims", 1L)), g.Scalar(1e-20f)])])
                : chosen;
            mix = g.Op("Mul", [mix, g.Scalar(c.RoutedScalingFactor)]);
            string zeros = g.Op("ConstantOfShape", [g.Op("Shape", [scores])], null, ("value", OnnxGraphBuilder.FillValue(0f)));
            string weights = g.Op("ScatterElements", [zeros, top[1], mix], null, ("axis", -1L)); // [B, S, E], 0 where unchosen
            // every expert at once: [B, S, E·F] hidden, each expert's block scaled by its weight, one down product
            string gate = g.Floats(m + "experts.gate_proj.all", Stack("gate_proj"), D, E * F);
            string up = g.Floats(m + "experts.up_proj.all", Stack("up_proj"), D, E * F);
            string down = g.Floats(m + "experts.down_proj.all", StackDown(pre), E * F, D);
            string h = Silu(g.Op("MatMul", [x, gate]), g.Op("MatMul", [x, up]));
            string scaled = g.Op("Mul", [Reshape(h, 0, 0, E, F), g.Op("Unsqueeze", [weights, g.Longs([-1])])]);
            string routed = g.Op("MatMul", [Reshape(scaled, 0, 0, E * F), down]);
            if (c.NSharedExperts == 0)
            {
                return routed;
            }

            string s = m + "shared_experts.";
            return g.Op("Add", [routed, SwiGlu(x, s + "gate_proj.weight", s + "up_proj.weight", s + "down_proj.weight")]);

            float[] Stack(string proj)
            {
                // [D, E·F]: column e·F + f is expert e's row f
                var w = new float[(long)D * E * F];
                for (int e = 0; e < E; e++)
                {
                    var src = layout[$"{m}experts.{e}.{proj}.weight"].Of(p);
                    for (int f = 0; f < F; f++)
                    {
                        for (int d = 0; d < D; d++)
                        {
                            w[(long)d * E * F + e * F + f] = src[f * D + d];
                        }
                    }
                }

                return w;
            }
        }

        /// <summary>[E·F, D]: row e·F + f is column f of expert e's down_proj [D, F].</summary>
        private float[] StackDown(string pre)
        {
            var w = new float[(long)E * F * D];
            for (int e = 0; e < E; e++)
            {
                var src = layout[$"{pre}mlp.experts.{e}.down_proj.weight"].Of(p);
                for (int d = 0; d < D; d++)
                {
                    for (int f = 0; f < F; f++)
                    {
                        w[(long)(e * F + f) * D + d] = src[d * F + f];
                    }
                }
            }

            return w;
        }

        /// <summary>Keeps the topk_group best groups (group score: sum of its top two) of choice [B, S, E]; −∞ elsewhere.</summary>
        private string MaskGroups(string choice)
        {
            int G = c.NGroup, size = E / G;
            string grouped = Reshape(choice, 0, 0, G, size);                                   // [B, S, G, E/G]
            var best = g.Ops("TopK", [grouped, g.Longs([Math.Min(2, size)])], [null, null], ("axis", -1L));
            string groupScore = g.Op("ReduceSum", [best[0], g.Longs([-1])], null, ("keepdims", 0L));    // [B, S, G]
            var keep = g.Ops("TopK", [groupScore, g.Longs([c.TopkGroup])], [null, null], ("axis", -1L));
            string ones = g.Op("ConstantOfShape", [g.Op("Shape", [keep[1]])], null, ("value", OnnxGraphBuilder.FillValue(1f)));
            string zeros = g.Op("ConstantOfShape", [g.Op("Shape", [groupScore])], null, ("value", OnnxGraphBuilder.FillValue(0f)));
            string kept = g.Op("ScatterElements", [zeros, keep[1], ones], null, ("axis", -1L));    // [B, S, G] 1 = kept
            string dropped = g.Op("Less", [g.Op("Unsqueeze", [kept, g.Longs([-1])]), g.Scalar(0.5f)]);
            return Reshape(g.Op("Where", [dropped, negInf, grouped]), 0, 0, E);
        }

        /// <summary>down(silu(x gateᵀ) ⊙ x upᵀ) for one SwiGLU MLP (dense layer or shared expert).</summary>
        private string SwiGlu(string x, string gate, string up, string down) =>
            MatMul(Silu(MatMul(x, gate), MatMul(x, up)), down);

        private string Silu(string gate, string up) => g.Op("Mul", [g.Op("Mul", [gate, g.Op("Sigmoid", [gate])]), up]);

        /// <summary>x · rsqrt(mean(x²) + eps) · w over the last axis.</summary>
        private string RmsNorm(string x, string weight)
        {
            string ms = g.Op("ReduceMean", [g.Op("Mul", [x, x])], null, ("axes", new long[] { -1 }), ("keepdims", 1L));
            string rstd = g.Op("Reciprocal", [g.Op("Sqrt", [g.Op("Add", [ms, g.Scalar(c.RmsNormEps)])])]);
            return g.Op("Mul", [g.Op("Mul", [x, rstd]), Weight(weight, transpose: false)]);
        }

        /// <summary>
        /// RoPE on adjacent pairs of the last axis (Dr) of x [lead..., Dr]: (x0, x1) → (x0 cos − x1 sin, x0 sin + x1 cos);
        /// cos/sin broadcast against [lead..., Dr/2]. <paramref name="lead"/> are Reshape's dims before the last (0 = keep).
        /// </summary>
        private string Rope(string x, string cos, string sin, params long[] lead)
        {
            string pairs = Reshape(x, [.. lead, Dr / 2, 2]);
            string x0 = g.Op("Gather", [pairs, zero], null, ("axis", -1L));
            string x1 = g.Op("Gather", [pairs, one], null, ("axis", -1L));
            string r0 = g.Op("Sub", [g.Op("Mul", [x0, cos]), g.Op("Mul", [x1, sin])]);
            string r1 = g.Op("Add", [g.Op("Mul", [x0, sin]), g.Op("Mul", [x1, cos])]);
            string last = g.Longs([-1]);
            string both = g.Op("Concat", [g.Op("Unsqueeze", [r0, last]), g.Op("Unsqueeze", [r1, last])], null, ("axis", -1L));
            return Reshape(both, [.. lead, Dr]);
        }

        private string MatMul(string x, string weight) => g.Op("MatMul", [x, Weight(weight)]);

        private string Reshape(string x, params long[] shape) => g.Op("Reshape", [x, g.Longs(shape)]);

        private string Transpose(string x, params long[] perm) => g.Op("Transpose", [x], null, ("perm", perm));

        /// <summary>
        /// The tensor as an initializer, once per name: a matrix [out, in] transposed to [in, out] for MatMul (the
        /// embedding kept as [V, D] for Gather), a vector as is.
        /// </summary>
        private string Weight(string name, bool transpose = true)
        {
            var slot = layout[name];
            string key = transpose && slot.IsMatrix ? name + ".T" : name;
            if (initialized.Add(key))
            {
                var w = slot.Of(p);
                if (transpose && slot.IsMatrix)
                {
                    int rows = slot.Rows, cols = slot.Cols;
                    var t = new float[(long)rows * cols];
                    for (int r = 0; r < rows; r++)
                    {
                        for (int k = 0; k < cols; k++)
                        {
                            t[(long)k * rows + r] = w[r * cols + k];
                        }
                    }

                    g.Floats(key, t, cols, rows);
                }
                else
                {
                    g.Floats(key, w, slot.Shape.Select(d => (long)d).ToArray());
                }
            }

            return key;
        }

        private readonly HashSet<string> initialized = new(StringComparer.Ordinal);
    }
}
