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
    {
        // Until the packed SIMD path lands, the scalar twin is the implementation.
        ScalarKernels.Gemm(op, c, ldc, a, lda, b, ldb, m, n, k, accumulate);
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
        string form = $"{op} m={m} n={n} k={k}";
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
            throw new ArgumentException($"GEMM {form}: {e.Message}", e.ParamName, e);
        }
    }
}
