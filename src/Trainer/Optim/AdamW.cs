using System.Numerics;

namespace K2RL.Trainer.Optim;

/// <summary>
/// AdamW with decoupled weight decay, as pure functions over spans plus a thin stateful wrapper:
///   m = β1 m + (1 − β1) g;  v = β2 v + (1 − β2) g²
///   p −= lr · ( (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + eps) + wd · p )
/// step t counts from 1. Defaults follow SPEC §2 (β 0.9 / 0.95, eps 1e-8, wd 0.1).
/// </summary>
public static class AdamW
{
    /// <summary>One update of param[i], m[i], v[i] from grad[i], all the same length.</summary>
    public static void Update(Span<float> param, ReadOnlySpan<float> grad, Span<float> m, Span<float> v, long step,
        float lr, float beta1, float beta2, float eps, float wd)
    {
        if (grad.Length != param.Length || m.Length != param.Length || v.Length != param.Length)
        {
            throw new ArgumentException(
                $"AdamW: param {param.Length}, grad {grad.Length}, m {m.Length}, v {v.Length} must have one length");
        }

        if (step < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(step), $"AdamW step counts from 1, got {step}");
        }

        float c1 = 1f / (1f - MathF.Pow(beta1, step));
        float c2 = 1f / (1f - MathF.Pow(beta2, step));
        int n = param.Length, i = 0;
        if (Vector.IsHardwareAccelerated && n >= Vector<float>.Count)
        {
            var vb1 = new Vector<float>(beta1);
            var vb1c = new Vector<float>(1f - beta1);
            var vb2 = new Vector<float>(beta2);
            var vb2c = new Vector<float>(1f - beta2);
            var vc1 = new Vector<float>(c1);
            var vc2 = new Vector<float>(c2);
            var veps = new Vector<float>(eps);
            var vlr = new Vector<float>(lr);
            var vwd = new Vector<float>(wd);
            for (; i <= n - Vector<float>.Count; i += Vector<float>.Count)
            {
                var g = new Vector<float>(grad[i..]);
                var mm = vb1 * new Vector<float>(m[i..]) + vb1c * g;
                var vv = vb2 * new Vector<float>(v[i..]) + vb2c * g * g;
                var p = new Vector<float>(param[i..]);
                p -= vlr * (mm * vc1 / (Vector.SquareRoot(vv * vc2) + veps) + vwd * p);
                mm.CopyTo(m[i..]);
                vv.CopyTo(v[i..]);
                p.CopyTo(param[i..]);
            }
        }

        for (; i < n; i++)
        {
            float g = grad[i];
            float mm = beta1 * m[i] + (1f - beta1) * g;
            float vv = beta2 * v[i] + (1f - beta2) * g * g;
            m[i] = mm;
            v[i] = vv;
            param[i] -= lr * (mm * c1 / (MathF.Sqrt(vv * c2) + eps) + wd * param[i]);
        }
    }
}
