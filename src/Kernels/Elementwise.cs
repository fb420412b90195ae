namespace K2RL.Kernels;

/// <summary>RMSNorm over the last axis: rows × C.</summary>
public static partial class RmsNorm
{
    public static void Forward(Span<float> output, Span<float> rstd, ReadOnlySpan<float> inp, ReadOnlySpan<float> weight,
        int rows, int C, float eps) => ForwardFast(output, rstd, inp, weight, rows, C, eps);

    public static void Backward(Span<float> dInp, Span<float> dWeight, ReadOnlySpan<float> dOut, ReadOnlySpan<float> inp,
        ReadOnlySpan<float> weight, ReadOnlySpan<float> rstd, int rows, int C)
        => BackwardFast(dInp, dWeight, dOut, inp, weight, rstd, rows, C);

    internal static void Validate(int outLen, int rstdLen, int inpLen, int wLen, int rows, int C)
    {
        Check.NonNegative(rows, "rows");
        Check.NonNegative(C, "C");
        Check.Length(inpLen, (long)rows * C, "inp", rows, C);
        Check.Length(outLen, (long)rows * C, "output", rows, C);
        Check.Length(rstdLen, rows, "rstd", rows);
        Check.Length(wLen, C, "weight", C);
    }

    internal static void ValidateBackward(int dInpLen, int dWLen, int dOutLen, int inpLen, int wLen, int rstdLen, int rows, int C)
    {
        Validate(dInpLen, rstdLen, inpLen, wLen, rows, C);
        Check.Length(dOutLen, (long)rows * C, "dOut", rows, C);
        Check.Length(dWLen, C, "dWeight", C);
    }
}

/// <summary>Row softmax (optionally causal) and log-softmax.</summary>
public static partial class Softmax
{
    /// <inheritdoc cref="ScalarKernels.SoftmaxForward"/>
    public static float Forward(Span<float> probs, ReadOnlySpan<float> logits, int rows, int cols, float scale,
        bool causal, int causalOffset = 0)
        => ForwardFast(probs, logits, rows, cols, scale, causal, causalOffset);

    public static void Backward(Span<float> dLogits, ReadOnlySpan<float> dProbs, ReadOnlySpan<float> probs, int rows,
        int cols, float scale) => BackwardFast(dLogits, dProbs, probs, rows, cols, scale);

    public static void LogSoftmax(Span<float> output, ReadOnlySpan<float> logits, int rows, int V)
        => LogSoftmaxFast(output, logits, rows, V);

    internal static void Validate(int outLen, int inLen, int rows, int cols)
    {
        Check.NonNegative(rows, "rows");
        Check.NonNegative(cols, "cols");
        Check.Length(inLen, (long)rows * cols, "logits", rows, cols);
        Check.Length(outLen, (long)rows * cols, "output", rows, cols);
    }

    internal static void ValidateBackward(int dLogitsLen, int dProbsLen, int probsLen, int rows, int cols)
    {
        Validate(dLogitsLen, probsLen, rows, cols);
        Check.Length(dProbsLen, (long)rows * cols, "dProbs", rows, cols);
    }
}

/// <summary>SwiGLU: silu(gate) * up, elementwise over n values.</summary>
public static partial class SwiGlu
{
    public static void Forward(Span<float> output, ReadOnlySpan<float> gate, ReadOnlySpan<float> up, int n)
        => ForwardFast(output, gate, up, n);

    public static void Backward(Span<float> dGate, Span<float> dUp, ReadOnlySpan<float> dOut, ReadOnlySpan<float> gate,
        ReadOnlySpan<float> up, int n) => BackwardFast(dGate, dUp, dOut, gate, up, n);

    internal static void Validate(int outLen, int gateLen, int upLen, int n)
    {
        Check.NonNegative(n, "n");
        Check.Length(gateLen, n, "gate", n);
        Check.Length(upLen, n, "up", n);
        Check.Length(outLen, n, "output", n);
    }

    internal static void ValidateBackward(int dGateLen, int dUpLen, int dOutLen, int gateLen, int upLen, int n)
    {
        Validate(dOutLen, gateLen, upLen, n);
        Check.Length(dGateLen, n, "dGate", n);
        Check.Length(dUpLen, n, "dUp", n);
    }
}

/// <summary>Rotary position embedding on adjacent pairs.</summary>
public static partial class Rope
{
    /// <summary>cos/sin tables [maxPos, dim/2] with inv_freq_i = theta^(−2i/dim).</summary>
    public static (float[] Cos, float[] Sin) BuildTables(int dim, int maxPos, double theta)
    {
        if (dim <= 0 || dim % 2 != 0)
        {
            throw new ArgumentException($"RoPE dim must be positive and even, got {dim}", nameof(dim));
        }

        Check.NonNegative(maxPos, nameof(maxPos));
        int half = dim / 2;
        var cos = new float[maxPos * half];
        var sin = new float[maxPos * half];
        for (int p = 0; p < maxPos; p++)
        {
            for (int i = 0; i < half; i++)
            {
                double invFreq = Math.Pow(theta, -2.0 * i / dim);
                double angle = p * invFreq;
                cos[p * half + i] = (float)Math.Cos(angle);
                sin[p * half + i] = (float)Math.Sin(angle);
            }
        }

        return (cos, sin);
    }

    /// <inheritdoc cref="ScalarKernels.RopeApply"/>
    public static void Apply(Span<float> x, ReadOnlySpan<int> positions, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin,
        int rows, int rowStride, int vecs, int vecStride, int offset, int dim, bool inverse = false)
        => ApplyFast(x, positions, cos, sin, rows, rowStride, vecs, vecStride, offset, dim, inverse);

    internal static void Validate(int xLen, int posLen, int cosLen, int sinLen, int rows, int rowStride, int vecs,
        int vecStride, int offset, int dim)
    {
        Check.NonNegative(rows, "rows");
        Check.NonNegative(vecs, "vecs");
        Check.NonNegative(offset, "offset");
        if (dim <= 0 || dim % 2 != 0)
        {
            throw new ArgumentException($"RoPE dim must be positive and even, got {dim}", nameof(dim));
        }

        if (vecs > 0 && offset + (long)(vecs - 1) * vecStride + dim > rowStride)
        {
            throw new ArgumentException(
                $"RoPE: {vecs} vectors of {dim} at offset {offset} stride {vecStride} do not fit a row of {rowStride}",
                nameof(rowStride));
        }

        Check.Length(xLen, (long)rows * rowStride, "x", rows, rowStride);
        Check.Length(posLen, rows, "positions", rows);
        if (cosLen != sinLen || cosLen % (dim / 2) != 0)
        {
            throw new ArgumentException($"RoPE tables: cos {cosLen} and sin {sinLen} must both be [maxPos, {dim / 2}]", "cos");
        }
    }

    internal static void CheckPosition(int pos, int maxPos)
    {
        if ((uint)pos >= (uint)maxPos)
        {
            throw new ArgumentException($"RoPE position {pos} is outside the table [0, {maxPos})", "positions");
        }
    }
}

/// <summary>Cross-entropy over rows of logits, with the log-sum-exp saved for backward.</summary>
public static partial class CrossEntropy
{
    public static void Forward(Span<float> losses, Span<float> lse, ReadOnlySpan<float> logits, ReadOnlySpan<int> targets,
        int rows, int V) => ForwardFast(losses, lse, logits, targets, rows, V);

    public static void Backward(Span<float> dLogits, ReadOnlySpan<float> dLoss, ReadOnlySpan<float> logits,
        ReadOnlySpan<float> lse, ReadOnlySpan<int> targets, int rows, int V)
        => BackwardFast(dLogits, dLoss, logits, lse, targets, rows, V);

    internal static void Validate(int lossLen, int lseLen, int logitsLen, int targetsLen, int rows, int V)
    {
        Check.NonNegative(rows, "rows");
        Check.NonNegative(V, "V");
        Check.Length(logitsLen, (long)rows * V, "logits", rows, V);
        Check.Length(targetsLen, rows, "targets", rows);
        Check.Length(lossLen, rows, "losses", rows);
        Check.Length(lseLen, rows, "lse", rows);
    }

    internal static void ValidateBackward(int dLogitsLen, int dLossLen, int logitsLen, int lseLen, int targetsLen, int rows,
        int V)
    {
        Validate(dLossLen, lseLen, logitsLen, targetsLen, rows, V);
        Check.Length(dLogitsLen, (long)rows * V, "dLogits", rows, V);
    }

    internal static void CheckTarget(int target, int V, int row)
    {
        if (target >= V)
        {
            throw new ArgumentException($"target {target} at row {row} is outside the vocabulary [0, {V})", "targets");
        }
    }
}

/// <summary>Per-row top-k selection.</summary>
public static partial class TopK
{
    public static void Select(Span<int> indices, ReadOnlySpan<float> scores, int rows, int n, int k)
        => SelectFast(indices, scores, rows, n, k);

    /// <summary>Total order used by top-k: larger first, NaN last, ties to the lower index (caller scans upward).</summary>
    internal static bool Before(float a, float b) => !float.IsNaN(a) && (float.IsNaN(b) || a > b);

    internal static void Validate(int idxLen, int scoresLen, int rows, int n, int k)
    {
        Check.NonNegative(rows, "rows");
        Check.NonNegative(n, "n");
        if (k < 0 || k > n)
        {
            throw new ArgumentException($"top-k: k = {k} must be in [0, n = {n}]", nameof(k));
        }

        Check.Length(scoresLen, (long)rows * n, "scores", rows, n);
        Check.Length(idxLen, (long)rows * k, "indices", rows, k);
    }
}

/// <summary>Newton–Schulz orthogonalization used by Muon (SPEC §2).</summary>
public static partial class NewtonSchulz
{
    public const float A = 3.4445f;
    public const float B = -4.7750f;
    public const float C = 2.0315f;

    public static void Orthogonalize(Span<float> output, ReadOnlySpan<float> g, int rows, int cols, int steps = 5)
        => Orthogonalize(output, g, rows, cols, NewtonSchulzWorkspace.ForCurrentThread, steps, ForkJoinPool.Shared.Threads);

    /// <summary>As above with the caller's buffers, the GEMMs on up to <see cref="ForkJoinPool.Threads"/> of <see cref="ForkJoinPool.Shared"/> threads.</summary>
    public static void Orthogonalize(Span<float> output, ReadOnlySpan<float> g, int rows, int cols,
        NewtonSchulzWorkspace workspace, int steps = 5)
        => Orthogonalize(output, g, rows, cols, workspace, steps, ForkJoinPool.Shared.Threads);

    internal static void Validate(int outLen, int gLen, int rows, int cols, int steps)
    {
        Check.NonNegative(rows, "rows");
        Check.NonNegative(cols, "cols");
        Check.NonNegative(steps, "steps");
        Check.Length(gLen, (long)rows * cols, "g", rows, cols);
        Check.Length(outLen, (long)rows * cols, "output", rows, cols);
    }
}
