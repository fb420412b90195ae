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

    /// <summary>
    /// c[m, n] = a[m, k] · b[n, k]ᵀ with b's rows in bf16, stored by <see cref="PackBf16Row"/> (row stride ldb
    /// ushorts). Each bf16 value widens exactly to fp32 and the FMAs run in the same order as the fp32
    /// <see cref="MultiplyNT(Span{float}, int, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, int, int, int)"/>,
    /// so the result is bit-identical to that product over the rounded weights; it only reads half the bytes.
    /// </summary>
    public static void MultiplyNT(Span<float> c, int ldc, ReadOnlySpan<float> a, int lda, ReadOnlySpan<ushort> b, int ldb,
        int m, int n, int k)
    {
        if (k % Vector256<float>.Count != 0 || !Vector256.IsHardwareAccelerated)
        {
            Span<float> row = k <= 1024 ? stackalloc float[k] : new float[k];
            for (int j = 0; j < n; j++)
            {
                UnpackBf16Row(b.Slice(j * ldb, k), row);
                for (int i = 0; i < m; i++)
                {
                    c[i * ldc + j] = TensorPrimitives.Dot(a.Slice(i * lda, k), row);
                }
            }

            return;
        }

        int full = k / Bf16Chunk, nv = k / Vector256<float>.Count;
        var mask = Vector256.Create(0xFFFF0000u);
        int i0 = 0;
        for (; i0 + 4 <= m; i0 += 4)
        {
            var a0 = Vectors(a.Slice(i0 * lda, k));
            var a1 = Vectors(a.Slice((i0 + 1) * lda, k));
            var a2 = Vectors(a.Slice((i0 + 2) * lda, k));
            var a3 = Vectors(a.Slice((i0 + 3) * lda, k));
            for (int j = 0; j < n; j++)
            {
                var bj = b.Slice(j * ldb, k);
                var pairs = MemoryMarshal.Cast<ushort, Vector256<uint>>(bj[..(full * Bf16Chunk)]);
                Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
                for (int q = 0; q < pairs.Length; q++)
                {
                    var raw = pairs[q];
                    var lo = Vector256.ShiftLeft(raw, 16).AsSingle();
                    var hi = (raw & mask).AsSingle();
                    int v = 2 * q;
                    s0 = Vector256.FusedMultiplyAdd(a0[v], lo, s0);
                    s1 = Vector256.FusedMultiplyAdd(a1[v], lo, s1);
                    s2 = Vector256.FusedMultiplyAdd(a2[v], lo, s2);
                    s3 = Vector256.FusedMultiplyAdd(a3[v], lo, s3);
                    s0 = Vector256.FusedMultiplyAdd(a0[v + 1], hi, s0);
                    s1 = Vector256.FusedMultiplyAdd(a1[v + 1], hi, s1);
                    s2 = Vector256.FusedMultiplyAdd(a2[v + 1], hi, s2);
                    s3 = Vector256.FusedMultiplyAdd(a3[v + 1], hi, s3);
                }

                if (nv > 2 * full)
                {
                    var tail = Tail(bj[(full * Bf16Chunk)..]);
                    s0 = Vector256.FusedMultiplyAdd(a0[nv - 1], tail, s0);
                    s1 = Vector256.FusedMultiplyAdd(a1[nv - 1], tail, s1);
                    s2 = Vector256.FusedMultiplyAdd(a2[nv - 1], tail, s2);
                    s3 = Vector256.FusedMultiplyAdd(a3[nv - 1], tail, s3);
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
                var bj = b.Slice(j * ldb, k);
                var pairs = MemoryMarshal.Cast<ushort, Vector256<uint>>(bj[..(full * Bf16Chunk)]);
                Vector256<float> s = default;
                for (int q = 0; q < pairs.Length; q++)
                {
                    var raw = pairs[q];
                    s = Vector256.FusedMultiplyAdd(ai[2 * q], Vector256.ShiftLeft(raw, 16).AsSingle(), s);
                    s = Vector256.FusedMultiplyAdd(ai[2 * q + 1], (raw & mask).AsSingle(), s);
                }

                if (nv > 2 * full)
                {
                    s = Vector256.FusedMultiplyAdd(ai[nv - 1], Tail(bj[(full * Bf16Chunk)..]), s);
                }

                c[i0 * ldc + j] = Vector256.Sum(s);
            }
        }
    }

    /// <summary>Values per interleaved bf16 chunk of <see cref="PackBf16Row"/>.</summary>
    public const int Bf16Chunk = 16;

    /// <summary>
    /// Rounds a row to bf16 (nearest even) in the layout the bf16 <c>MultiplyNT</c> reads: every whole chunk of 16
    /// values x[0..15] is stored as the pairs (x[i], x[i + 8]) for i = 0..7, so one 256-bit load gives x[0..7] by a
    /// 16-bit left shift of each 32-bit lane and x[8..15] by masking the low halves; the last k mod 16 values
    /// follow in order.
    /// </summary>
    public static void PackBf16Row(ReadOnlySpan<float> row, Span<ushort> packed)
    {
        if (packed.Length < row.Length)
        {
            throw new ArgumentException($"packed row holds {packed.Length} values, the row has {row.Length}", nameof(packed));
        }

        int full = row.Length / Bf16Chunk;
        for (int q = 0; q < full; q++)
        {
            for (int i = 0; i < Bf16Chunk / 2; i++)
            {
                packed[q * Bf16Chunk + 2 * i] = Bf16.FromFloat(row[q * Bf16Chunk + i]);
                packed[q * Bf16Chunk + 2 * i + 1] = Bf16.FromFloat(row[q * Bf16Chunk + Bf16Chunk / 2 + i]);
            }
        }

        for (int i = full * Bf16Chunk; i < row.Length; i++)
        {
            packed[i] = Bf16.FromFloat(row[i]);
        }
    }

    /// <summary>The fp32 values of a row stored by <see cref="PackBf16Row"/>, in their original order.</summary>
    public static void UnpackBf16Row(ReadOnlySpan<ushort> packed, Span<float> row)
    {
        int full = row.Length / Bf16Chunk;
        for (int q = 0; q < full; q++)
        {
            for (int i = 0; i < Bf16Chunk / 2; i++)
            {
                row[q * Bf16Chunk + i] = Bf16.ToFloat(packed[q * Bf16Chunk + 2 * i]);
                row[q * Bf16Chunk + Bf16Chunk / 2 + i] = Bf16.ToFloat(packed[q * Bf16Chunk + 2 * i + 1]);
            }
        }

        for (int i = full * Bf16Chunk; i < row.Length; i++)
        {
            row[i] = Bf16.ToFloat(packed[i]);
        }
    }

    /// <summary>Eight bf16 values stored in order, widened to fp32.</summary>
    private static Vector256<float> Tail(ReadOnlySpan<ushort> eight)
    {
        var raw = Vector128.Create(eight[..8]);
        return Vector256.ShiftLeft(Vector256.Create(Vector128.WidenLower(raw), Vector128.WidenUpper(raw)), 16).AsSingle();
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
