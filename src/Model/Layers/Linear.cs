using K2RL.Kernels;

namespace K2RL.Model.Layers;

/// <summary>
/// A bias-free linear layer y = x Wᵀ with W stored [out, in] (nn.Linear), as a forward/backward pair over
/// row-major spans. Parameter gradients accumulate (+=); activation gradients are assigned (=) unless
/// <c>accumulate</c> says otherwise (several branches feeding one input).
/// Letters: N rows (tokens), In, Out feature sizes.
/// </summary>
public static class Linear
{
    /// <summary>out[N, Out] = inp[N, In] · weight[Out, In]ᵀ.</summary>
    public static void Forward(Span<float> output, ReadOnlySpan<float> inp, ReadOnlySpan<float> weight, int N, int In, int Out,
        int threads = 0) => Gemm.Multiply(GemmOp.NT, output, Out, inp, In, weight, In, N, Out, In, false, Threads(threads));

    /// <summary>0: the kernels' default thread count; inside an already parallel region pass 1.</summary>
    internal static int Threads(int threads) => threads > 0 ? threads : ForkJoinPool.Shared.Threads;

    /// <summary>dInp[N, In] (=, or += when accumulateInput) dOut · W; dWeight[Out, In] += dOutᵀ · inp.</summary>
    public static void Backward(Span<float> dInp, Span<float> dWeight, ReadOnlySpan<float> dOut, ReadOnlySpan<float> inp,
        ReadOnlySpan<float> weight, int N, int In, int Out, bool accumulateInput = false, int threads = 0)
    {
        Gemm.Multiply(GemmOp.NN, dInp, In, dOut, Out, weight, In, N, In, Out, accumulateInput, Threads(threads));
        Gemm.Multiply(GemmOp.TN, dWeight, In, dOut, Out, inp, In, Out, In, N, true, Threads(threads));
    }
}

/// <summary>
/// SwiGLU feed-forward block y = down(silu(gate x) ⊙ up x), hidden F: the dense MLP, every routed expert and
/// the shared expert. Saved activations: g, u [N, F] (pre-activation) and h [N, F] = silu(g) ⊙ u.
/// </summary>
public static class SwiGluMlp
{
    /// <summary>
    /// g, u, h [N, F] saved; output [N, D] (= or += when accumulate). When the gate and up weights lie next to
    /// each other in the flat buffer (<paramref name="wGateUp"/> = [gate; up] as [2F, D]) and a scratch
    /// <paramref name="gu"/> [N, 2F] is given, both projections run as one GEMM of twice the width (the wider
    /// product runs markedly faster for F = 128) and are split into g and u afterwards.
    /// </summary>
    public static void Forward(Span<float> output, Span<float> g, Span<float> u, Span<float> h, ReadOnlySpan<float> inp,
        ReadOnlySpan<float> wGate, ReadOnlySpan<float> wUp, ReadOnlySpan<float> wDown, int N, int D, int F,
        bool accumulate = false, int threads = 0, Span<float> gu = default, ReadOnlySpan<float> wGateUp = default)
    {
        if (N == 0)
        {
            return;
        }

        if (!gu.IsEmpty && !wGateUp.IsEmpty)
        {
            Linear.Forward(gu, inp, wGateUp, N, D, 2 * F, threads);
            for (int r = 0; r < N; r++)
            {
                gu.Slice(r * 2 * F, F).CopyTo(g.Slice(r * F, F));
                gu.Slice(r * 2 * F + F, F).CopyTo(u.Slice(r * F, F));
            }
        }
        else
        {
            Linear.Forward(g, inp, wGate, N, D, F, threads);
            Linear.Forward(u, inp, wUp, N, D, F, threads);
        }

        SwiGlu.Forward(h, g, u, N * F);
        Gemm.Multiply(GemmOp.NT, output, D, h, F, wDown, F, N, D, F, accumulate, Linear.Threads(threads));
    }

    /// <summary>
    /// dInp[N, D] (= or += when accumulateInput); weight gradients +=. Scratch dH, dG, dU [N, F] are
    /// overwritten.
    /// </summary>
    public static void Backward(Span<float> dInp, Span<float> dWGate, Span<float> dWUp, Span<float> dWDown,
        Span<float> dH, Span<float> dG, Span<float> dU, ReadOnlySpan<float> dOut, ReadOnlySpan<float> inp,
        ReadOnlySpan<float> g, ReadOnlySpan<float> u, ReadOnlySpan<float> h, ReadOnlySpan<float> wGate,
        ReadOnlySpan<float> wUp, ReadOnlySpan<float> wDown, int N, int D, int F, bool accumulateInput = false,
        int threads = 0)
    {
        if (N == 0)
        {
            return;
        }

        Linear.Backward(dH, dWDown, dOut, h, wDown, N, F, D, false, threads);
        SwiGlu.Backward(dG, dU, dH, g, u, N * F);
        Linear.Backward(dInp, dWGate, dG, inp, wGate, N, D, F, accumulateInput, threads);
        Linear.Backward(dInp, dWUp, dU, inp, wUp, N, D, F, true, threads);
    }
}
