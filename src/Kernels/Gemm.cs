namespace K2RL.Kernels;

/// <summary>
/// General matrix multiply on row-major strided views: C[M,N] (+)= op(A)·op(B).
/// The forms forward and backward need are NN, NT and TN (<see cref="GemmOp"/>).
/// </summary>
public static partial class Gemm
{
    /// <summary>C[M,N] (+)= op(A)·op(B). Throws <see cref="ArgumentException"/> naming the shapes on a mismatch.</summary>
    public static void Multiply(GemmOp op, Span<float> c, int ldc, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, int m, int n, int k, bool accumulate = false)
        => Multiply(op, c, ldc, a, lda, b, ldb, m, n, k, accumulate, ForkJoinPool.Shared.Threads);

    /// <summary>
    /// As above, on at most <paramref name="maxThreads"/> threads. The result is bit-identical for every thread
    /// count: each C element is reduced in an order fixed by the shapes alone (one FMA chain per 256-long slice of
    /// the reduction, slices added in order). C must not overlap A or B. Problems under 2 MFLOP run on the caller.
    /// </summary>
    public static unsafe void Multiply(GemmOp op, Span<float> c, int ldc, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, int m, int n, int k, bool accumulate, int maxThreads)
    {
        Validate(op, c.Length, ldc, a.Length, lda, b.Length, ldb, m, n, k);
        if (maxThreads < 1)
        {
            throw new ArgumentException($"maxThreads must be >= 1, got {maxThreads}", nameof(maxThreads));
        }

        if (m == 0 || n == 0)
        {
            return;
        }

        SimdWidth width = SimdSelect.Current;
        if (width == SimdWidth.Scalar)
        {
            ScalarKernels.Gemm(op, c, ldc, a, lda, b, ldb, m, n, k, accumulate);
            return;
        }

        if (k == 0)
        {
            if (!accumulate)
            {
                for (int i = 0; i < m; i++)
                {
                    c.Slice(i * ldc, n).Clear();
                }
            }

            return;
        }

        fixed (float* pc = c, pa = a, pb = b)
        {
            MultiplyPacked(op, pc, ldc, pa, lda, pb, ldb, m, n, k, accumulate, maxThreads, width);
        }
    }

    /// <summary>Dense (contiguous) operands: leading dimensions follow from the stored shapes.</summary>
    public static void Multiply(GemmOp op, Span<float> c, ReadOnlySpan<float> a, ReadOnlySpan<float> b,
        int m, int n, int k, bool accumulate = false)
    {
        int lda = op == GemmOp.TN ? m : k;
        int ldb = op == GemmOp.NT ? k : n;
        Multiply(op, c, n, a, lda, b, ldb, m, n, k, accumulate);
    }

    internal static void Validate(GemmOp op, int cLen, int ldc, int aLen, int lda, int bLen, int ldb, int m, int n, int k)
    {
        if (op is not (GemmOp.NN or GemmOp.NT or GemmOp.TN))
        {
            throw new ArgumentException($"unknown GEMM op {(int)op}", nameof(op));
        }

        Check.NonNegative(m, "m");
        Check.NonNegative(n, "n");
        Check.NonNegative(k, "k");
        try
        {
            Check.Matrix(cLen, m, n, ldc, "C");
            if (op == GemmOp.TN)
            {
                Check.Matrix(aLen, k, m, lda, "A");
            }
            else
            {
                Check.Matrix(aLen, m, k, lda, "A");
            }

            if (op == GemmOp.NT)
            {
                Check.Matrix(bLen, n, k, ldb, "B");
            }
            else
            {
                Check.Matrix(bLen, k, n, ldb, "B");
            }
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"GEMM {op} m={m} n={n} k={k}: {e.Message}", e.ParamName, e);
        }
    }
}
