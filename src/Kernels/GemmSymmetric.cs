namespace K2RL.Kernels;

public static partial class Gemm
{
    /// <summary>
    /// C[m, m] = X·Xᵀ for X[m, k] (row stride <paramref name="ldx"/>): the symmetric product Newton–Schulz needs twice per
    /// step (X·Xᵀ, and A·A = A·Aᵀ for a symmetric A). On one thread only the micro-tiles on or below the diagonal are
    /// computed (about 56 % of the work at m = 128) and the rest is mirrored; with more threads the full NT product
    /// runs in parallel. Bit-identical to <see cref="Multiply(GemmOp, Span{float}, int, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, int, int, int, bool, int)"/>
    /// with op NT and A = B = X either way: each element is the same FMA chain, and x·y = y·x exactly.
    /// </summary>
    public static unsafe void SymmetricProduct(Span<float> c, int ldc, ReadOnlySpan<float> x, int ldx, int m, int k, int maxThreads)
    {
        Validate(GemmOp.NT, c.Length, ldc, x.Length, ldx, x.Length, ldx, m, m, k);
        long flops = 2L * m * m * k;
        SimdWidth width = SimdSelect.Current;
        if ((maxThreads > 1 && flops >= ParallelMinFlops) || width == SimdWidth.Scalar || k == 0 || m == 0)
        {
            Multiply(GemmOp.NT, c, ldc, x, ldx, x, ldx, m, m, k, accumulate: false, Math.Max(1, maxThreads));
            return;
        }

        fixed (float* pc = c, px = x)
        {
            BlockedFor(width, GemmOp.NT, pc, ldc, px, ldx, px, ldx, m, m, k, accumulate: false, lowerOnly: true);
            MirrorLower(pc, ldc, m);
        }
    }

    /// <summary>Copies the strict lower triangle of C[m, m] onto the upper one, in 16×16 tiles that stay in L1.</summary>
    private static unsafe void MirrorLower(float* c, int ldc, int m)
    {
        const int Tile = 16;
        for (int i0 = 0; i0 < m; i0 += Tile)
        {
            int i1 = Math.Min(m, i0 + Tile);
            for (int j0 = i0; j0 < m; j0 += Tile)
            {
                int j1 = Math.Min(m, j0 + Tile);
                for (int i = i0; i < i1; i++)
                {
                    float* row = c + (long)i * ldc;
                    for (int j = Math.Max(j0, i + 1); j < j1; j++)
                    {
                        row[j] = c[(long)j * ldc + i];
                    }
                }
            }
        }
    }
}
