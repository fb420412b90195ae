using System.Runtime.Intrinsics;

namespace K2RL.Kernels;

/// <summary>
/// Products with few rows, for decode: a routed expert sees ~4 tokens per step and an attention head's query is
/// one row, where the packed GEMM spends more on packing the weights than on the arithmetic. Each row (or vector
/// of columns) of the wide operand is read once for up to four rows of the narrow one. Row-major operands with
/// leading dimensions; shapes are checked like <see cref="Gemm"/>'s.
/// <para>
/// At vector width W (the widest accelerated one, or the test override: <see cref="SimdSelect"/>), an output of
/// MultiplyNT is one FMA chain over the k/W whole vectors of the reduction plus an overlapping last vector whose
/// already-counted lanes are zeroed; MultiplyAddNN keeps one FMA chain per element of c. The order depends only on
/// W and the extent, never on m, n or which rows share a block, so a row's bits do not depend on the other rows.
/// An extent shorter than W runs at the next narrower width; shorter than 4, on the scalar twin
/// (<see cref="ScalarKernels.Gemm"/>, <see cref="ScalarKernels.MultiplyNTBf16"/>), which is also the oracle.
/// </para>
/// </summary>
public static partial class SmallGemm
{
    /// <summary>c[m, n] = a[m, k] · b[n, k]ᵀ.</summary>
    public static void MultiplyNT(Span<float> c, int ldc, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        int m, int n, int k)
    {
        Gemm.Validate(GemmOp.NT, c.Length, ldc, a.Length, lda, b.Length, ldb, m, n, k);
        switch (WidthFor(k))
        {
            case SimdWidth.W512:
                NT<Simd512, Vector512<float>, float, F32Row<Simd512, Vector512<float>>>(c, ldc, a, lda, b, ldb, m, n, k);
                break;
            case SimdWidth.W256:
                NT<Simd256, Vector256<float>, float, F32Row<Simd256, Vector256<float>>>(c, ldc, a, lda, b, ldb, m, n, k);
                break;
            case SimdWidth.W128:
                NT<Simd128, Vector128<float>, float, F32Row<Simd128, Vector128<float>>>(c, ldc, a, lda, b, ldb, m, n, k);
                break;
            default:
                ScalarKernels.Gemm(GemmOp.NT, c, ldc, a, lda, b, ldb, m, n, k, accumulate: false);
                break;
        }
    }

    /// <summary>
    /// c[m, n] = a[m, k] · b[n, k]ᵀ with b's rows in bf16, stored by <see cref="PackBf16Row"/> (row stride ldb
    /// ushorts). Each bf16 value widens exactly to fp32 and the FMAs run in the same order as the fp32
    /// <see cref="MultiplyNT(Span{float}, int, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, int, int, int)"/>
    /// at every width, so the result is bit-identical to that product over the rounded weights; it only reads half
    /// the bytes.
    /// </summary>
    public static void MultiplyNT(Span<float> c, int ldc, ReadOnlySpan<float> a, int lda, ReadOnlySpan<ushort> b, int ldb,
        int m, int n, int k)
    {
        Gemm.Validate(GemmOp.NT, c.Length, ldc, a.Length, lda, b.Length, ldb, m, n, k);
        switch (WidthFor(k))
        {
            case SimdWidth.W512:
                NT<Simd512, Vector512<float>, ushort, Bf16Row<Simd512, Vector512<float>>>(c, ldc, a, lda, b, ldb, m, n, k);
                break;
            case SimdWidth.W256:
                NT<Simd256, Vector256<float>, ushort, Bf16Row<Simd256, Vector256<float>>>(c, ldc, a, lda, b, ldb, m, n, k);
                break;
            case SimdWidth.W128:
                NT<Simd128, Vector128<float>, ushort, Bf16Row<Simd128, Vector128<float>>>(c, ldc, a, lda, b, ldb, m, n, k);
                break;
            default:
                ScalarKernels.MultiplyNTBf16(c, ldc, a, lda, b, ldb, m, n, k);
                break;
        }
    }

    /// <summary>c[m, n] += a[m, k] · b[k, n].</summary>
    public static void MultiplyAddNN(Span<float> c, int ldc, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        int m, int n, int k)
    {
        Gemm.Validate(GemmOp.NN, c.Length, ldc, a.Length, lda, b.Length, ldb, m, n, k);
        switch (WidthFor(n))
        {
            case SimdWidth.W512:
                AddNN<Simd512, Vector512<float>>(c, ldc, a, lda, b, ldb, m, n, k);
                break;
            case SimdWidth.W256:
                AddNN<Simd256, Vector256<float>>(c, ldc, a, lda, b, ldb, m, n, k);
                break;
            case SimdWidth.W128:
                AddNN<Simd128, Vector128<float>>(c, ldc, a, lda, b, ldb, m, n, k);
                break;
            default:
                ScalarKernels.Gemm(GemmOp.NN, c, ldc, a, lda, b, ldb, m, n, k, accumulate: true);
                break;
        }
    }

    /// <summary>Values per interleaved bf16 chunk of <see cref="PackBf16Row"/>: two of the widest vectors.</summary>
    public const int Bf16Chunk = 32;

    /// <summary>
    /// Rounds a row to bf16 (nearest even) in the layout the bf16 <c>MultiplyNT</c> reads: every whole chunk of 32
    /// values x[0..31] is stored as the pairs (x[i], x[i + 16]) for i = 0..15, so a load of W pairs widens to
    /// x[i..i+W) by a 16-bit left shift of each 32-bit lane and to x[i+16..i+16+W) by masking the low halves, at
    /// every width W ≤ 16; the last k mod 32 values follow in order.
    /// </summary>
    public static void PackBf16Row(ReadOnlySpan<float> row, Span<ushort> packed)
    {
        if (packed.Length < row.Length)
        {
            throw new ArgumentException($"packed row holds {packed.Length} values, the row has {row.Length}", nameof(packed));
        }

        for (int i = 0; i < row.Length; i++)
        {
            packed[PackedIndex(i, row.Length)] = Bf16.FromFloat(row[i]);
        }
    }

    /// <summary>The fp32 values of a row stored by <see cref="PackBf16Row"/>, in their original order.</summary>
    public static void UnpackBf16Row(ReadOnlySpan<ushort> packed, Span<float> row)
    {
        for (int i = 0; i < row.Length; i++)
        {
            row[i] = Bf16.ToFloat(packed[PackedIndex(i, row.Length)]);
        }
    }

    /// <summary>Where value i of a k-long row lies in its <see cref="PackBf16Row"/> layout.</summary>
    internal static int PackedIndex(int i, int k)
    {
        int chunk = i / Bf16Chunk, r = i % Bf16Chunk, half = Bf16Chunk / 2;
        if (chunk >= k / Bf16Chunk)
        {
            return i; // the tail, in order
        }

        return chunk * Bf16Chunk + (r < half ? 2 * r : 2 * (r - half) + 1);
    }

    /// <summary>The widest width up to the current one whose vector fits in the extent (scalar below 4).</summary>
    private static SimdWidth WidthFor(int extent)
    {
        SimdWidth w = SimdSelect.Current;
        if (w == SimdWidth.W512 && extent < 16)
        {
            w = SimdWidth.W256;
        }

        if (w == SimdWidth.W256 && extent < 8)
        {
            w = SimdWidth.W128;
        }

        return w == SimdWidth.W128 && extent < 4 ? SimdWidth.Scalar : w;
    }
}
