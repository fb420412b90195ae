using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace K2RL.Model.Layers;

/// <summary>
/// Products with few rows, for decode: a routed expert sees ~4 tokens per step and an attention head's query is
/// one row, where the packed GEMM spends more on packing the weights than on the arithmetic. Each row of the
/// wide operand is read once for up to four rows of the narrow one, with 256-bit FMAs. Results differ from the
/// packed GEMM's only by summation order. Row-major operands with leading dimensions.
/// </summary>
public static class SmallGemm
{
    /// <summary>Up to this many rows the small path beats the packed GEMM (k2-nano shapes).</summary>
    public const int MaxRows = 8;

    /// <summary>c[m, n] = a[m, k] · b[n, k]ᵀ.</summary>
    public static void MultiplyNT(Span<float> c, int ldc, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        int m, int n, int k)
    {
        if (k % Vector256<float>.Count != 0 || !Vector256.IsHardwareAccelerated)
        {
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    c[i * ldc + j] = TensorPrimitives.Dot(a.Slice(i * lda, k), b.Slice(j * ldb, k));
                }
            }

            return;
        }

        int i0 = 0;
        for (; i0 + 4 <= m; i0 += 4)
        {
            var a0 = Vectors(a.Slice(i0 * lda, k));
            var a1 = Vectors(a.Slice((i0 + 1) * lda, k));
            var a2 = Vectors(a.Slice((i0 + 2) * lda, k));
            var a3 = Vectors(a.Slice((i0 + 3) * lda, k));
            for (int j = 0; j < n; j++)
            {
                var bj = Vectors(b.Slice(j * ldb, k));
                Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
                for (int v = 0; v < bj.Length; v++)
                {
                    var bv = bj[v];
                    s0 = Vector256.FusedMultiplyAdd(a0[v], bv, s0);
                    s1 = Vector256.FusedMultiplyAdd(a1[v], bv, s1);
                    s2 = Vector256.FusedMultiplyAdd(a2[v], bv, s2);
                    s3 = Vector256.FusedMultiplyAdd(a3[v], bv, s3);
                }

                c[i0 * ldc + j] = Vector256.Sum(s0);
                c[(i0 + 1) * ldc + j] = Vector256.Sum(s1);
                c[(i0 + 2) * ldc + j] = Vector256.Sum(s2);
                c[(i0 + 3) * ldc + j] = Vector256.Sum(s3);
            }
        }

        for (; i0 < m; i0++)
        {
            var ai = Vectors(a.Slice(i0 * lda, k));
            for (int j = 0; j < n; j++)
            {
                var bj = Vectors(b.Slice(j * ldb, k));
                Vector256<float> s = default;
                for (int v = 0; v < bj.Length; v++)
                {
                    s = Vector256.FusedMultiplyAdd(ai[v], bj[v], s);
                }

                c[i0 * ldc + j] = Vector256.Sum(s);
            }
        }
    }

    /// <summary>c[m, n] += a[m, k] · b[k, n].</summary>
    public static void MultiplyAddNN(Span<float> c, int ldc, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        int m, int n, int k)
    {
        if (n % Vector256<float>.Count != 0 || !Vector256.IsHardwareAccelerated)
        {
            for (int i = 0; i < m; i++)
            {
                var ci = c.Slice(i * ldc, n);
                for (int kk = 0; kk < k; kk++)
                {
                    TensorPrimitives.MultiplyAdd(b.Slice(kk * ldb, n), a[i * lda + kk], ci, ci);
                }
            }

            return;
        }

        int i0 = 0;
        for (; i0 + 4 <= m; i0 += 4)
        {
            var c0 = MemoryMarshal.Cast<float, Vector256<float>>(c.Slice(i0 * ldc, n));
            var c1 = MemoryMarshal.Cast<float, Vector256<float>>(c.Slice((i0 + 1) * ldc, n));
            var c2 = MemoryMarshal.Cast<float, Vector256<float>>(c.Slice((i0 + 2) * ldc, n));
            var c3 = MemoryMarshal.Cast<float, Vector256<float>>(c.Slice((i0 + 3) * ldc, n));
            for (int v = 0; v < c0.Length; v++)
            {
                Vector256<float> s0 = c0[v], s1 = c1[v], s2 = c2[v], s3 = c3[v];
                for (int kk = 0; kk < k; kk++)
                {
                    var bv = Vectors(b.Slice(kk * ldb, n))[v];
                    s0 = Vector256.FusedMultiplyAdd(Vector256.Create(a[i0 * lda + kk]), bv, s0);
                    s1 = Vector256.FusedMultiplyAdd(Vector256.Create(a[(i0 + 1) * lda + kk]), bv, s1);
                    s2 = Vector256.FusedMultiplyAdd(Vector256.Create(a[(i0 + 2) * lda + kk]), bv, s2);
                    s3 = Vector256.FusedMultiplyAdd(Vector256.Create(a[(i0 + 3) * lda + kk]), bv, s3);
                }

                c0[v] = s0;
                c1[v] = s1;
                c2[v] = s2;
                c3[v] = s3;
            }
        }

        for (; i0 < m; i0++)
        {
            var ci = MemoryMarshal.Cast<float, Vector256<float>>(c.Slice(i0 * ldc, n));
            for (int kk = 0; kk < k; kk++)
            {
                var bk = Vectors(b.Slice(kk * ldb, n));
                var av = Vector256.Create(a[i0 * lda + kk]);
                for (int v = 0; v < ci.Length; v++)
                {
                    ci[v] = Vector256.FusedMultiplyAdd(av, bk[v], ci[v]);
                }
            }
        }
    }

    private static ReadOnlySpan<Vector256<float>> Vectors(ReadOnlySpan<float> x) => MemoryMarshal.Cast<float, Vector256<float>>(x);
}
