using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace K2RL.Kernels;

// Pointwise kernels written once against ISimd and instantiated at the widest accelerated width.
// A length that is not a multiple of the width ends with one overlapping last vector. Its result is computed
// from the inputs before the main loop and stored after it, so outputs that alias inputs stay correct.

public static partial class SwiGlu
{
    private static void ForwardFast(Span<float> output, ReadOnlySpan<float> gate, ReadOnlySpan<float> up, int n)
    {
        Validate(output.Length, gate.Length, up.Length, n);
        switch (Pointwise.WidthFor(n))
        {
            case SimdWidth.W512:
                Forward<Simd512, Vector512<float>>(output, gate, up, n);
                break;
            case SimdWidth.W256:
                Forward<Simd256, Vector256<float>>(output, gate, up, n);
                break;
            case SimdWidth.W128:
                Forward<Simd128, Vector128<float>>(output, gate, up, n);
                break;
            default:
                ScalarKernels.SwiGluForward(output, gate, up, n);
                break;
        }
    }

    private static void BackwardFast(Span<float> dGate, Span<float> dUp, ReadOnlySpan<float> dOut,
        ReadOnlySpan<float> gate, ReadOnlySpan<float> up, int n)
    {
        ValidateBackward(dGate.Length, dUp.Length, dOut.Length, gate.Length, up.Length, n);
        switch (Pointwise.WidthFor(n))
        {
            case SimdWidth.W512:
                Backward<Simd512, Vector512<float>>(dGate, dUp, dOut, gate, up, n);
                break;
            case SimdWidth.W256:
                Backward<Simd256, Vector256<float>>(dGate, dUp, dOut, gate, up, n);
                break;
            case SimdWidth.W128:
                Backward<Simd128, Vector128<float>>(dGate, dUp, dOut, gate, up, n);
                break;
            default:
                ScalarKernels.SwiGluBackward(dGate, dUp, dOut, gate, up, n);
                break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV Sigmoid<TOps, TV>(TV g)
        where TOps : ISimd<TV>
        where TV : struct
    {
        TV one = TOps.Splat(1f);
        return TOps.Div(one, TOps.Add(one, TOps.Exp(TOps.Sub(TOps.Zero, g))));
    }

    /// <summary>out = silu(gate) ⊙ up over n ≥ one vector.</summary>
    private static void Forward<TOps, TV>(Span<float> output, ReadOnlySpan<float> gate, ReadOnlySpan<float> up, int n)
        where TOps : ISimd<TV>
        where TV : struct
    {
        ref readonly float g0 = ref MemoryMarshal.GetReference(gate);
        ref readonly float u0 = ref MemoryMarshal.GetReference(up);
        ref float o0 = ref MemoryMarshal.GetReference(output);
        nuint last = (nuint)(n - TOps.Count);
        TV tail = ForwardStep<TOps, TV>(in g0, in u0, last);
        for (nuint i = 0; i < last; i += (nuint)TOps.Count)
        {
            TOps.Store(ForwardStep<TOps, TV>(in g0, in u0, i), ref o0, i);
        }

        TOps.Store(tail, ref o0, last);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV ForwardStep<TOps, TV>(ref readonly float g0, ref readonly float u0, nuint i)
        where TOps : ISimd<TV>
        where TV : struct
    {
        TV g = TOps.Load(in g0, i);
        return TOps.Mul(TOps.Mul(g, Sigmoid<TOps, TV>(g)), TOps.Load(in u0, i));
    }

    /// <summary>dUp = dOut ⊙ silu(g); dGate = dOut ⊙ up ⊙ σ(g)(1 + g(1 − σ(g))), both assigned.</summary>
    private static void Backward<TOps, TV>(Span<float> dGate, Span<float> dUp, ReadOnlySpan<float> dOut,
        ReadOnlySpan<float> gate, ReadOnlySpan<float> up, int n)
        where TOps : ISimd<TV>
        where TV : struct
    {
        ref readonly float d0 = ref MemoryMarshal.GetReference(dOut);
        ref readonly float g0 = ref MemoryMarshal.GetReference(gate);
        ref readonly float u0 = ref MemoryMarshal.GetReference(up);
        ref float dg0 = ref MemoryMarshal.GetReference(dGate);
        ref float du0 = ref MemoryMarshal.GetReference(dUp);
        nuint last = (nuint)(n - TOps.Count);
        (TV tailG, TV tailU) = BackwardStep<TOps, TV>(in d0, in g0, in u0, last);
        for (nuint i = 0; i < last; i += (nuint)TOps.Count)
        {
            (TV dg, TV du) = BackwardStep<TOps, TV>(in d0, in g0, in u0, i);
            TOps.Store(dg, ref dg0, i);
            TOps.Store(du, ref du0, i);
        }

        TOps.Store(tailG, ref dg0, last);
        TOps.Store(tailU, ref du0, last);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (TV DGate, TV DUp) BackwardStep<TOps, TV>(ref readonly float d0, ref readonly float g0,
        ref readonly float u0, nuint i)
        where TOps : ISimd<TV>
        where TV : struct
    {
        TV g = TOps.Load(in g0, i);
        TV d = TOps.Load(in d0, i);
        TV sig = Sigmoid<TOps, TV>(g);
        TV one = TOps.Splat(1f);
        TV dUp = TOps.Mul(d, TOps.Mul(g, sig));
        TV slope = TOps.Mul(sig, TOps.Add(one, TOps.Mul(g, TOps.Sub(one, sig))));
        return (TOps.Mul(TOps.Mul(d, TOps.Load(in u0, i)), slope), dUp);
    }
}

public static partial class Rope
{
    private static void ApplyFast(Span<float> x, ReadOnlySpan<int> positions, ReadOnlySpan<float> cos,
        ReadOnlySpan<float> sin, int rows, int rowStride, int vecs, int vecStride, int offset, int dim, bool inverse)
    {
        Validate(x.Length, positions.Length, cos.Length, sin.Length, rows, rowStride, vecs, vecStride, offset, dim);
        switch (Pointwise.WidthFor(dim))
        {
            case SimdWidth.W512:
                Apply<Simd512, Vector512<float>>(x, positions, cos, sin, rows, rowStride, vecs, vecStride, offset, dim, inverse);
                break;
            case SimdWidth.W256:
                Apply<Simd256, Vector256<float>>(x, positions, cos, sin, rows, rowStride, vecs, vecStride, offset, dim, inverse);
                break;
            case SimdWidth.W128:
                Apply<Simd128, Vector128<float>>(x, positions, cos, sin, rows, rowStride, vecs, vecStride, offset, dim, inverse);
                break;
            default:
                ScalarKernels.RopeApply(x, positions, cos, sin, rows, rowStride, vecs, vecStride, offset, dim, inverse);
                break;
        }
    }

    /// <summary>
    /// Per row, cos and sin are spread to interleaved [dim] rows, cosD = (c0, c0, c1, c1, ...) and
    /// sinD = (−s0, s0, −s1, s1, ...), so a pair rotates as x ⊙ cosD + swap(x) ⊙ sinD — the scalar twin's
    /// x0·c − x1·s, x0·s + x1·c with the same roundings.
    /// </summary>
    private static void Apply<TOps, TV>(Span<float> x, ReadOnlySpan<int> positions, ReadOnlySpan<float> cos,
        ReadOnlySpan<float> sin, int rows, int rowStride, int vecs, int vecStride, int offset, int dim, bool inverse)
        where TOps : ISimd<TV>
        where TV : struct
    {
        int half = dim / 2;
        Span<float> cosD = dim <= 1024 ? stackalloc float[dim] : new float[dim];
        Span<float> sinD = dim <= 1024 ? stackalloc float[dim] : new float[dim];
        ref readonly float c0 = ref MemoryMarshal.GetReference(cosD);
        ref readonly float s0 = ref MemoryMarshal.GetReference(sinD);
        ref float x0 = ref MemoryMarshal.GetReference(x);
        float sign = inverse ? -1f : 1f;
        nuint w = (nuint)TOps.Count;
        nuint last = (nuint)(dim - TOps.Count);
        for (int r = 0; r < rows; r++)
        {
            int pos = positions[r];
            CheckPosition(pos, cos.Length / half);
            for (int i = 0; i < half; i++)
            {
                float c = cos[pos * half + i];
                float s = sign * sin[pos * half + i];
                cosD[2 * i] = c;
                cosD[2 * i + 1] = c;
                sinD[2 * i] = -s;
                sinD[2 * i + 1] = s;
            }

            for (int v = 0; v < vecs; v++)
            {
                ref float vec = ref Unsafe.Add(ref x0, r * rowStride + offset + v * vecStride);
                TV tail = Rotate<TOps, TV>(ref vec, in c0, in s0, last);
                for (nuint i = 0; i < last; i += w)
                {
                    TOps.Store(Rotate<TOps, TV>(ref vec, in c0, in s0, i), ref vec, i);
                }

                TOps.Store(tail, ref vec, last);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV Rotate<TOps, TV>(ref float vec, ref readonly float c0, ref readonly float s0, nuint i)
        where TOps : ISimd<TV>
        where TV : struct
    {
        TV xv = TOps.Load(in vec, i);
        return TOps.Add(TOps.Mul(xv, TOps.Load(in c0, i)), TOps.Mul(TOps.SwapPairs(xv), TOps.Load(in s0, i)));
    }
}

internal static class Pointwise
{
    /// <summary>The widest accelerated width whose vector fits in n (Scalar when none does).</summary>
    public static SimdWidth WidthFor(int n)
    {
        SimdWidth best = SimdSelect.Current;
        if (best >= SimdWidth.W512 && n >= Vector512<float>.Count)
        {
            return SimdWidth.W512;
        }

        if (best >= SimdWidth.W256 && n >= Vector256<float>.Count)
        {
            return SimdWidth.W256;
        }

        return best >= SimdWidth.W128 && n >= Vector128<float>.Count ? SimdWidth.W128 : SimdWidth.Scalar;
    }
}
