using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace K2RL.Kernels;

/// <summary>
/// Packing for <see cref="Gemm"/>. A block [mc, kc] becomes MR-row micro-panels, element (i, p) of a panel at
/// [p * MR + i]; a B block [kc, nc] becomes NR-column micro-panels, element (p, j) at [p * NR + j]; the ragged
/// last panel is padded with zeros (which add exact zeros to the padded lanes only). Where a panel is a
/// transpose of the stored rows (A in NN/NT, B in NT) 8×8 blocks are transposed in registers.
/// Every routine here is compiled fully optimized at once (AggressiveOptimization): tier-0 code for these loops is
/// an order of magnitude slower, and on a loaded machine the background re-JIT to tier 1 can take seconds.
/// </summary>
internal static unsafe class GemmPack
{
    private const int MR = Gemm.MR;

    /// <summary>Packs op(A)[ic.., pc..] (mc × kc) into MR-row panels at dst (16 floats of slack after the last).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackA(GemmOp op, float* a, int lda, int ic, int pc, int mc, int kc, float* dst)
    {
        if (op == GemmOp.TN)
        {
            // A(i, p) = a[p, i]: row p of a holds every panel's slot p; read it once, contiguously.
            for (int p = 0; p < kc; p++)
            {
                ScatterRow(a + (long)(pc + p) * lda + ic, mc, dst + p * MR, MR, kc);
            }

            return;
        }

        for (int ir = 0; ir < mc; ir += MR)
        {
            float* src = a + (long)(ic + ir) * lda + pc;
            TransposeRows(src, lda, Math.Min(MR, mc - ir), kc, dst + (long)ir * kc, MR);
        }
    }

    /// <summary>Packs op(B)[pc.., jc..] (kc × nc) into nr-column panels at dst.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackB(GemmOp op, float* b, int ldb, int pc, int jc, int kc, int nc, int nr, float* dst)
    {
        if (op != GemmOp.NT)
        {
            // B(p, j) = b[p, j]: row p of b holds every panel's slot p.
            for (int p = 0; p < kc; p++)
            {
                ScatterRow(b + (long)(pc + p) * ldb + jc, nc, dst + p * nr, nr, kc);
            }

            return;
        }

        for (int jr = 0; jr < nc; jr += nr)
        {
            int cols = Math.Min(nr, nc - jr);
            float* panel = dst + (long)jr * kc;

            // B(p, j) = b[j, p]: rows of b become columns of the panel, 8 at a time.
            for (int j8 = 0; j8 < nr; j8 += 8)
            {
                float* src = b + (long)(jc + jr + j8) * ldb + pc;
                TransposeRows(src, ldb, Math.Clamp(cols - j8, 0, 8), kc, panel + j8, nr);
            }
        }
    }

    /// <summary>
    /// Splits a contiguous run of <paramref name="count"/> floats into panels of <paramref name="width"/>: piece q goes
    /// to dst + q·width·kc (the same slot p of panel q); the ragged last piece is padded with zeros.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScatterRow(float* src, int count, float* dst, int width, int kc)
    {
        long panelStride = (long)width * kc;
        int j = 0;
        for (; j + width <= count; j += width, dst += panelStride)
        {
            CopyRow(src + j, dst, width);
        }

        if (j < count)
        {
            int q = 0;
            for (; j + q < count; q++)
            {
                dst[q] = src[j + q];
            }

            for (; q < width; q++)
            {
                dst[q] = 0f;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRow(float* src, float* dst, int count)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; j + 8 <= count; j += 8)
            {
                Vector256.Store(Vector256.Load(src + j), dst + j);
            }
        }

        if (Vector128.IsHardwareAccelerated)
        {
            for (; j + 4 <= count; j += 4)
            {
                Vector128.Store(Vector128.Load(src + j), dst + j);
            }
        }

        for (; j < count; j++)
        {
            dst[j] = src[j];
        }
    }

    /// <summary>
    /// dst[p * dstStride + r] = src[r * ld + p] for r &lt; rows (zeros for rows ≤ r &lt; min(8, dstStride)), p &lt; kc.
    /// With AVX, 8 rows × 8 p are transposed in registers and stored as 8-wide rows; a row may spill up to
    /// 8 − dstStride floats past its slot when dstStride = MR, which the next store (or the slack) absorbs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposeRows(float* src, int ld, int rows, int kc, float* dst, int dstStride)
    {
        int width = Math.Min(8, dstStride);
        int p = 0;
        if (Avx.IsSupported)
        {
            for (; p + 8 <= kc; p += 8)
            {
                Vector256<float> r0 = rows > 0 ? Avx.LoadVector256(src + p) : default;
                Vector256<float> r1 = rows > 1 ? Avx.LoadVector256(src + ld + p) : default;
                Vector256<float> r2 = rows > 2 ? Avx.LoadVector256(src + 2L * ld + p) : default;
                Vector256<float> r3 = rows > 3 ? Avx.LoadVector256(src + 3L * ld + p) : default;
                Vector256<float> r4 = rows > 4 ? Avx.LoadVector256(src + 4L * ld + p) : default;
                Vector256<float> r5 = rows > 5 ? Avx.LoadVector256(src + 5L * ld + p) : default;
                Vector256<float> r6 = rows > 6 ? Avx.LoadVector256(src + 6L * ld + p) : default;
                Vector256<float> r7 = rows > 7 ? Avx.LoadVector256(src + 7L * ld + p) : default;
                Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1);
                Vector256<float> t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
                Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5);
                Vector256<float> t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
                Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE);
                Vector256<float> u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE);
                Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE);
                Vector256<float> u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
                float* d = dst + (long)p * dstStride;
                Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20));
                Avx.Store(d + dstStride, Avx.Permute2x128(u1, u5, 0x20));
                Avx.Store(d + 2 * dstStride, Avx.Permute2x128(u2, u6, 0x20));
                Avx.Store(d + 3 * dstStride, Avx.Permute2x128(u3, u7, 0x20));
                Avx.Store(d + 4 * dstStride, Avx.Permute2x128(u0, u4, 0x31));
                Avx.Store(d + 5 * dstStride, Avx.Permute2x128(u1, u5, 0x31));
                Avx.Store(d + 6 * dstStride, Avx.Permute2x128(u2, u6, 0x31));
                Avx.Store(d + 7 * dstStride, Avx.Permute2x128(u3, u7, 0x31));
            }
        }

        for (; p < kc; p++)
        {
            float* d = dst + (long)p * dstStride;
            int r = 0;
            for (; r < rows; r++)
            {
                d[r] = src[(long)r * ld + p];
            }

            for (; r < width; r++)
            {
                d[r] = 0f;
            }
        }
    }
}
