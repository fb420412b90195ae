using K2RL.Model;
using K2RL.Trainer.Optim;

namespace K2RL.Trainer.Tests;

/// <summary>QK-Clip against the head logits computed straight from the MLA weights (SPEC §1 steps 1–5).</summary>
public class QkClipTests
{
    [Fact]
    public void QkClip_ScalesExactlyTheClippedHeadsLogitsByGamma()
    {
        var config = TestUtil.TestConfig();
        var layout = new ParameterLayout(config);
        var w = TestUtil.Gaussian((int)layout.TotalLength, 21, 0.3f);
        int L = config.NumHiddenLayers, H = config.NumAttentionHeads;
        var cq = TestUtil.Gaussian(config.QLoraRank!.Value, 1);
        var c = TestUtil.Gaussian(config.KvLoraRank, 2);
        var kpe = TestUtil.Gaussian(config.QkRopeHeadDim, 3);
        var before = new float[L, H];
        for (int l = 0; l < L; l++)
        {
            for (int h = 0; h < H; h++)
            {
                before[l, h] = Logit(w, layout, l, h, cq, c, kpe);
            }
        }

        var maxLogits = new float[L * H];
        maxLogits[0 * H + 1] = 50f;   // over tau
        maxLogits[1 * H + 0] = 30f;   // equal to tau: untouched
        maxLogits[1 * H + 1] = 120f;  // over tau
        var clipped = QkClip.Apply(w, layout, maxLogits, 30f);
        Assert.Equal([(0, 1), (1, 1)], clipped.Select(x => (x.Layer, x.Head)));
        for (int l = 0; l < L; l++)
        {
            for (int h = 0; h < H; h++)
            {
                float after = Logit(w, layout, l, h, cq, c, kpe);
                var hit = clipped.FirstOrDefault(x => x.Layer == l && x.Head == h);
                if (hit.Gamma > 0)
                {
                    Assert.Equal(before[l, h] * hit.Gamma, after, Math.Abs(before[l, h]) * 1e-5f + 1e-6f);
                }
                else
                {
                    Assert.Equal(before[l, h], after);
                }
            }
        }
    }

    [Fact]
    public void QkClip_TouchesOnlyTheQueryAndKeyNopeRowsOfTheClippedHead()
    {
        var config = TestUtil.TestConfig();
        var layout = new ParameterLayout(config);
        var w = TestUtil.Gaussian((int)layout.TotalLength, 5);
        var w0 = (float[])w.Clone();
        int H = config.NumAttentionHeads, Dn = config.QkNopeHeadDim, Dr = config.QkRopeHeadDim, Dv = config.VHeadDim;
        QkClip.Apply(w, layout, [0f, 400f, 0f, 0f], 100f);
        var qb = layout["model.layers.0.self_attn.q_b_proj.weight"];
        var kvb = layout["model.layers.0.self_attn.kv_b_proj.weight"];
        var changed = new HashSet<long>();
        for (long i = 0; i < w.Length; i++)
        {
            if (w[i] != w0[i])
            {
                changed.Add(i);
            }
        }

        var expected = new HashSet<long>();
        for (int r = 1 * (Dn + Dr); r < 2 * (Dn + Dr); r++)
        {
            for (int col = 0; col < qb.Cols; col++)
            {
                expected.Add(qb.Offset + r * qb.Cols + col);
            }
        }

        for (int r = 1 * (Dn + Dv); r < 1 * (Dn + Dv) + Dn; r++)
        {
            for (int col = 0; col < kvb.Cols; col++)
            {
                expected.Add(kvb.Offset + r * kvb.Cols + col);
            }
        }

        Assert.Subset(expected, changed);
        Assert.True(changed.SetEquals(expected.Where(i => w0[i] != 0)), "only head 1's q and k_nope rows of layer 0 change");
        float gamma = 0.25f;
        Assert.Equal(w0[qb.Offset + (H - 1) * (Dn + Dr) * qb.Cols] * MathF.Sqrt(gamma), w[qb.Offset + (H - 1) * (Dn + Dr) * qb.Cols]);
        Assert.Equal(w0[qb.Offset + ((H - 1) * (Dn + Dr) + Dn) * qb.Cols] * gamma, w[qb.Offset + ((H - 1) * (Dn + Dr) + Dn) * qb.Cols]);
    }

    /// <summary>q·k for one head: q = q_b_proj·cq, k_nope from kv_b_proj·c, k_pe shared (RoPE is a rotation applied to both, omitted).</summary>
    private static float Logit(float[] w, ParameterLayout layout, int l, int h, float[] cq, float[] c, float[] kpe)
    {
        var cfg = layout.Config;
        int Dn = cfg.QkNopeHeadDim, Dr = cfg.QkRopeHeadDim, Dv = cfg.VHeadDim;
        var qb = layout[$"model.layers.{l}.self_attn.q_b_proj.weight"];
        var kvb = layout[$"model.layers.{l}.self_attn.kv_b_proj.weight"];
        var q = qb.Of(w);
        var kv = kvb.Of(w);
        double s = 0;
        for (int d = 0; d < Dn + Dr; d++)
        {
            double qd = 0;
            for (int j = 0; j < qb.Cols; j++)
            {
                qd += q[(h * (Dn + Dr) + d) * qb.Cols + j] * cq[j];
            }

            double kd;
            if (d < Dn)
            {
                kd = 0;
                for (int j = 0; j < kvb.Cols; j++)
                {
                    kd += kv[(h * (Dn + Dv) + d) * kvb.Cols + j] * c[j];
                }
            }
            else
            {
                kd = kpe[d - Dn];
            }

            s += qd * kd;
        }

        return (float)(s * cfg.SoftmaxScale);
    }
}
