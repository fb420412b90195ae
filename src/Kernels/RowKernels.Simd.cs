using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace K2RL.Kernels;

// Row-wise kernels built from TensorPrimitives (which picks the widest vector width itself), one row at a time.
// Parameter gradients accumulate (+=), activation gradients are assigned (=). Letters: rows = B*T, C channels,
// V vocabulary. Each public entry point validates once, then works on exact-size row slices.

public static partial class RmsNorm
{
    private static void ForwardFast(Span<float> output, Span<float> rstd, ReadOnlySpan<float> inp,
        ReadOnlySpan<float> weight, int rows, int C, float eps)
    {
        Validate(output.Length, rstd.Length, inp.Length, weight.Length, rows, C);
        if (SimdSelect.Current == SimdWidth.Scalar)
        {
            ScalarKernels.RmsNormForward(output, rstd, inp, weight, rows, C, eps);
            return;
        }

        ReadOnlySpan<float> w = weight[..C];
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> x = inp.Slice(r * C, C);      // [C]
            Span<float> y = output.Slice(r * C, C);           // [C]
            float s = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(x) / Math.Max(C, 1) + eps);
            rstd[r] = s;
            TensorPrimitives.Multiply(x, s, y);
            TensorPrimitives.Multiply(y, w, y);
        }
    }

    private static void BackwardFast(Span<float> dInp, Span<float> dWeight, ReadOnlySpan<float> dOut,
        ReadOnlySpan<float> inp, ReadOnlySpan<float> weight, ReadOnlySpan<float> rstd, int rows, int C)
    {
        ValidateBackward(dInp.Length, dWeight.Length, dOut.Length, inp.Length, weight.Length, rstd.Length, rows, C);
        if (SimdSelect.Current == SimdWidth.Scalar)
        {
            ScalarKernels.RmsNormBackward(dInp, dWeight, dOut, inp, weight, rstd, rows, C);
            return;
        }

        float[]? rented = C > 2048 ? ArrayPool<float>.Shared.Rent(C) : null;
        Span<float> gx = rented is null ? stackalloc float[C] : rented.AsSpan(0, C); // [C] dOut ⊙ inp
        ReadOnlySpan<float> w = weight[..C];
        Span<float> dW = dWeight[..C];
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> g = dOut.Slice(r * C, C);
            ReadOnlySpan<float> x = inp.Slice(r * C, C);
            Span<float> dx = dInp.Slice(r * C, C);
            float s = rstd[r];
            // y_i = x_i s w_i;  dx_j = s w_j g_j − s³ x_j / C · Σ_i g_i w_i x_i;  dw_i += g_i x_i s
            TensorPrimitives.Multiply(g, x, gx);
            float coef = TensorPrimitives.Dot(gx, w) / C * s * s * s;
            TensorPrimitives.MultiplyAdd(gx, s, dW, dW);
            TensorPrimitives.Multiply(w, g, dx);
            TensorPrimitives.Multiply(dx, s, dx);
            TensorPrimitives.MultiplyAdd(x, -coef, dx, dx);
        }

        if (rented is not null)
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }
}

public static partial class Softmax
{
    private static float ForwardFast(Span<float> probs, ReadOnlySpan<float> logits, int rows, int cols, float scale,
        bool causal, int causalOffset)
    {
        Validate(probs.Length, logits.Length, rows, cols);
        if (SimdSelect.Current == SimdWidth.Scalar)
        {
            return ScalarKernels.SoftmaxForward(probs, logits, rows, cols, scale, causal, causalOffset);
        }

        float maxAll = float.NegativeInfinity;
        for (int r = 0; r < rows; r++)
        {
            int visible = causal ? (int)Math.Clamp(r + (long)causalOffset + 1, 0, cols) : cols;
            Span<float> p = probs.Slice(r * cols, cols);       // [cols]
            p[visible..].Clear();
            if (visible == 0)
            {
                continue;
            }

            Span<float> pv = p[..visible];
            TensorPrimitives.Multiply(logits.Slice(r * cols, visible), scale, pv);
            float max = TensorPrimitives.Max(pv);
            maxAll = Math.Max(maxAll, max);
            TensorPrimitives.Subtract(pv, max, pv);
            TensorPrimitives.Exp(pv, pv);
            float sum = TensorPrimitives.Sum(pv);
            TensorPrimitives.Multiply(pv, sum > 0 ? 1f / sum : 0f, pv);
        }

        return maxAll;
    }

    private static void BackwardFast(Span<float> dLogits, ReadOnlySpan<float> dProbs, ReadOnlySpan<float> probs,
        int rows, int cols, float scale)
    {
        ValidateBackward(dLogits.Length, dProbs.Length, probs.Length, rows, cols);
        if (SimdSelect.Current == SimdWidth.Scalar)
        {
            ScalarKernels.SoftmaxBackward(dLogits, dProbs, probs, rows, cols, scale);
            return;
        }

        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> p = probs.Slice(r * cols, cols);
            ReadOnlySpan<float> dp = dProbs.Slice(r * cols, cols);
            Span<float> dl = dLogits.Slice(r * cols, cols);
            float dot = TensorPrimitives.Dot(p, dp);
            TensorPrimitives.Subtract(dp, dot, dl);
            TensorPrimitives.Multiply(dl, p, dl);
            TensorPrimitives.Multiply(dl, scale, dl);
        }
    }

    private static void LogSoftmaxFast(Span<float> output, ReadOnlySpan<float> logits, int rows, int V)
    {
        Validate(output.Length, logits.Length, rows, V);
        if (SimdSelect.Current == SimdWidth.Scalar || V == 0)
        {
            ScalarKernels.LogSoftmaxForward(output, logits, rows, V);
            return;
        }

        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> x = logits.Slice(r * V, V);
            TensorPrimitives.Subtract(x, RowMath.LogSumExp(x), output.Slice(r * V, V));
        }
    }
}

public static partial class CrossEntropy
{
    private static void ForwardFast(Span<float> losses, Span<float> lse, ReadOnlySpan<float> logits,
        ReadOnlySpan<int> targets, int rows, int V)
    {
        Validate(losses.Length, lse.Length, logits.Length, targets.Length, rows, V);
        if (SimdSelect.Current == SimdWidth.Scalar || V == 0)
        {
            ScalarKernels.CrossEntropyForward(losses, lse, logits, targets, rows, V);
            return;
        }

        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> x = logits.Slice(r * V, V);   // [V]
            int t = targets[r];
            CheckTarget(t, V, r);
            float l = RowMath.LogSumExp(x);
            lse[r] = l;
            losses[r] = t < 0 ? 0f : l - x[t];
        }
    }

    private static void BackwardFast(Span<float> dLogits, ReadOnlySpan<float> dLoss, ReadOnlySpan<float> logits,
        ReadOnlySpan<float> lse, ReadOnlySpan<int> targets, int rows, int V)
    {
        ValidateBackward(dLogits.Length, dLoss.Length, logits.Length, lse.Length, targets.Length, rows, V);
        if (SimdSelect.Current == SimdWidth.Scalar)
        {
            ScalarKernels.CrossEntropyBackward(dLogits, dLoss, logits, lse, targets, rows, V);
            return;
        }

        for (int r = 0; r < rows; r++)
        {
            Span<float> d = dLogits.Slice(r * V, V);           // [V]
            int t = targets[r];
            CheckTarget(t, V, r);
            if (t < 0)
            {
                d.Clear();
                continue;
            }

            // (softmax − onehot) · dLoss
            TensorPrimitives.Subtract(logits.Slice(r * V, V), lse[r], d);
            TensorPrimitives.Exp(d, d);
            TensorPrimitives.Multiply(d, dLoss[r], d);
            d[t] -= dLoss[r];
        }
    }
}

/// <summary>Row reductions TensorPrimitives has no single call for.</summary>
internal static class RowMath
{
    /// <summary>log Σ exp(x) over a non-empty row, shifted by its max, in one pass after the max.</summary>
    public static float LogSumExp(ReadOnlySpan<float> x)
    {
        float max = TensorPrimitives.Max(x);
        float sum = SimdSelect.Current switch
        {
            SimdWidth.W512 when x.Length >= Vector512<float>.Count => SumExp<Simd512, Vector512<float>>(x, max),
            SimdWidth.W512 or SimdWidth.W256 when x.Length >= Vector256<float>.Count => SumExp<Simd256, Vector256<float>>(x, max),
            _ when x.Length >= Vector128<float>.Count => SumExp<Simd128, Vector128<float>>(x, max),
            _ => SumExpScalar(x, max),
        };
        return max + MathF.Log(sum);
    }

    private static float SumExpScalar(ReadOnlySpan<float> x, float shift)
    {
        float sum = 0;
        foreach (float v in x)
        {
            sum += MathF.Exp(v - shift);
        }

        return sum;
    }

    /// <summary>Σ exp(x − shift) for x.Length ≥ one vector; the overlapping last vector masks lanes already summed.</summary>
    private static float SumExp<TOps, TV>(ReadOnlySpan<float> x, float shift)
        where TOps : ISimd<TV>
        where TV : struct
    {
        int w = TOps.Count;
        ref readonly float src = ref x[0];
        TV s = TOps.Splat(shift);
        TV acc = TOps.Zero;
        int i = 0;
        for (; i + w <= x.Length; i += w)
        {
            acc = TOps.Add(acc, TOps.Exp(TOps.Sub(TOps.Load(in src, (nuint)i), s)));
        }

        if (i < x.Length)
        {
            int last = x.Length - w;
            TV tail = TOps.Exp(TOps.Sub(TOps.Load(in src, (nuint)last), s));
            acc = TOps.Add(acc, TOps.ZeroBelow(tail, i - last));
        }

        return TOps.Sum(acc);
    }
}
