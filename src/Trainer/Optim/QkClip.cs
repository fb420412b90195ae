using K2RL.Model;

namespace K2RL.Trainer.Optim;

/// <summary>One head that QK-Clip rescaled: its max logit before the clip and the factor gamma = tau / S.</summary>
public readonly record struct ClippedHead(int Layer, int Head, float MaxLogit, float Gamma);

/// <summary>
/// QK-Clip (SPEC §2), run after the optimizer step on the max pre-softmax logits of that step's forward.
/// For every layer/head with S_h &gt; tau, gamma = tau / S_h: the head's q_nope rows of q_b_proj and k_nope
/// rows of kv_b_proj × sqrt(gamma), its q_pe rows × gamma. The shared k_pe, value rows, o_proj and norms are
/// untouched and momentum is not rescaled, so only head h's logits change, each by exactly gamma.
/// </summary>
public static class QkClip
{
    /// <param name="maxLogits">[L, H] row-major, per layer and head the max logit (scale included).</param>
    public static List<ClippedHead> Apply(float[] parameters, ParameterLayout layout, ReadOnlySpan<float> maxLogits, float tau)
    {
        var c = layout.Config;
        int L = c.NumHiddenLayers, H = c.NumAttentionHeads;
        if (maxLogits.Length != L * H)
        {
            throw new ArgumentException($"QK-Clip: max logits hold {maxLogits.Length} values, the model has [L={L}, H={H}]");
        }

        var clipped = new List<ClippedHead>();
        for (int l = 0; l < L; l++)
        {
            for (int h = 0; h < H; h++)
            {
                float s = maxLogits[l * H + h];
                if (!(s > tau) || !float.IsFinite(s))
                {
                    continue;
                }

                float gamma = tau / s;
                ClipHead(parameters, layout, l, h, gamma);
                clipped.Add(new ClippedHead(l, h, s, gamma));
            }
        }

        return clipped;
    }

    /// <summary>Rescales one head's query/key rows so its logits scale by <paramref name="gamma"/>.</summary>
    public static void ClipHead(float[] parameters, ParameterLayout layout, int layer, int head, float gamma)
    {
        var m = layout.Config.Mla;
        float root = MathF.Sqrt(gamma);
        string p = $"model.layers.{layer}.self_attn.";
        var q = layout[m.HasQLora ? p + "q_b_proj.weight" : p + "q_proj.weight"];
        var kv = layout[p + "kv_b_proj.weight"];
        ScaleRows(q.Of(parameters), q.Cols, head * m.QkHead, m.Dn, root);           // q_nope
        ScaleRows(q.Of(parameters), q.Cols, head * m.QkHead + m.Dn, m.Dr, gamma);   // q_pe
        ScaleRows(kv.Of(parameters), kv.Cols, head * m.KvHead, m.Dn, root);         // k_nope
    }

    private static void ScaleRows(Span<float> w, int cols, int firstRow, int rows, float factor)
    {
        foreach (ref float x in w.Slice(firstRow * cols, rows * cols))
        {
            x *= factor;
        }
    }
}
