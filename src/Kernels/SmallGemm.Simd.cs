using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace K2RL.Kernels;

// The vector bodies of SmallGemm, one generic body per width (ISimd). Operands are already validated; rows are
// reached by ref + element offset. Letters: m rows of a (and c), n columns of c, k the reduction.

/// <summary>
/// The vectors of one k-long row of b stored as TElem, by element offset (a multiple of W, or k − W for the last
/// one). <c>tail</c> is scratch of <see cref="SmallGemm.Bf16Chunk"/> floats a row may widen values into.
/// </summary>
internal interface IRowVectors<TSelf, TElem, TV>
    where TSelf : IRowVectors<TSelf, TElem, TV>, allows ref struct
    where TV : struct
{
    static abstract TSelf Open(ref readonly TElem row, int k, Span<float> tail);

    TV At(nuint offset);
}

public static partial class SmallGemm
{
    /// <summary>An fp32 row.</summary>
    private readonly ref struct F32Row<TOps, TV> : IRowVectors<F32Row<TOps, TV>, float, TV>
        where TOps : ISimd<TV>
        where TV : struct
    {
        private readonly ref readonly float row;

        private F32Row(ref readonly float row) => this.row = ref row;

        public static F32Row<TOps, TV> Open(ref readonly float row, int k, Span<float> tail) => new(in row);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TV At(nuint offset) => TOps.Load(in row, offset);
    }

    /// <summary>
    /// A row stored by <see cref="PackBf16Row"/>: vectors inside the whole chunks widen straight from the pairs;
    /// the rest (the in-order tail, and a last vector that overlaps the last chunk) come from the widened tail.
    /// </summary>
    private readonly ref struct Bf16Row<TOps, TV> : IRowVectors<Bf16Row<TOps, TV>, ushort, TV>
        where TOps : ISimd<TV>
        where TV : struct
    {
        private readonly ref readonly ushort row;
        private readonly ref readonly float tail;   // values [tailStart, k), widened
        private readonly nuint chunked;             // values stored interleaved: 32 · (k / 32)
        private readonly nuint tailStart;

        public static Bf16Row<TOps, TV> Open(ref readonly ushort row, int k, Span<float> tail) => new(in row, k, tail);

        private Bf16Row(ref readonly ushort row, int k, Span<float> tailBuffer)
        {
            this.row = ref row;
            chunked = (nuint)(k / Bf16Chunk * Bf16Chunk);
            tailStart = chunked == (nuint)k ? chunked : Math.Min(chunked, (nuint)(k - TOps.Count)); // k ≥ W
            for (int p = (int)tailStart; p < k; p++)
            {
                tailBuffer[p - (int)tailStart] = Bf16.ToFloat(Unsafe.Add(ref Unsafe.AsRef(in row), PackedIndex(p, k)));
            }

            tail = ref MemoryMarshal.GetReference(tailBuffer);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TV At(nuint offset)
        {
            if (offset + (nuint)TOps.Count > chunked)
            {
                return TOps.Load(in tail, offset - tailStart);
            }

            nuint within = offset % Bf16Chunk;
            TOps.LoadBf16Pairs(in row, offset - within + 2 * (within % (Bf16Chunk / 2)), out TV lo, out TV hi);
            return within < Bf16Chunk / 2 ? lo : hi;
        }
    }

    /// <summary>c[m, n] = a[m, k] · b[n, k]ᵀ, b's rows read through TRow (fp32, or bf16 pairs).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void NT<TOps, TV, TElem, TRow>(Span<float> c, int ldc, ReadOnlySpan<float> a, int lda, ReadOnlySpan<TElem> b,
        int ldb, int m, int n, int k)
        where TOps : ISimd<TV>
        where TV : struct
        where TRow : IRowVectors<TRow, TElem, TV>, allows ref struct
    {
        Span<float> tail = stackalloc float[Bf16Chunk];
        ref float c0 = ref MemoryMarshal.GetReference(c);
        ref readonly float a0 = ref MemoryMarshal.GetReference(a);
        ref readonly TElem b0 = ref MemoryMarshal.GetReference(b);
        int i = 0;
        for (; i + 4 <= m; i += 4)
        {
            for (int j = 0; j < n; j++)
            {
                var bj = TRow.Open(in Unsafe.Add(ref Unsafe.AsRef(in b0), (nint)j * ldb), k, tail);
                Dot4<TOps, TV, TElem, TRow>(ref Unsafe.Add(ref c0, (nint)i * ldc + j), ldc,
                    in Unsafe.Add(ref Unsafe.AsRef(in a0), (nint)i * lda), lda, bj, k);
            }
        }

        for (; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                var bj = TRow.Open(in Unsafe.Add(ref Unsafe.AsRef(in b0), (nint)j * ldb), k, tail);
                Unsafe.Add(ref c0, (nint)i * ldc + j) = Dot1<TOps, TV, TElem, TRow>(in Unsafe.Add(ref Unsafe.AsRef(in a0), (nint)i * lda), bj, k);
            }
        }
    }

    /// <summary>c[r·ldc] = Σ_p a[r·lda + p] · b[p] for the four rows r = 0..3: one FMA chain each, b read once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4<TOps, TV, TElem, TB>(ref float c, nint ldc, ref readonly float a, nint lda, TB b, int k)
        where TOps : ISimd<TV>
        where TV : struct
        where TB : IRowVectors<TB, TElem, TV>, allows ref struct
    {
        nuint w = (nuint)TOps.Count;
        ref readonly float a1 = ref Unsafe.Add(ref Unsafe.AsRef(in a), lda);
        ref readonly float a2 = ref Unsafe.Add(ref Unsafe.AsRef(in a1), lda);
        ref readonly float a3 = ref Unsafe.Add(ref Unsafe.AsRef(in a2), lda);
        TV s0 = TOps.Zero, s1 = TOps.Zero, s2 = TOps.Zero, s3 = TOps.Zero;
        nuint whole = (nuint)k / w * w;
        for (nuint off = 0; off < whole; off += w)
        {
            TV bv = b.At(off);
            s0 = TOps.Fma(TOps.Load(in a, off), bv, s0);
            s1 = TOps.Fma(TOps.Load(in a1, off), bv, s1);
            s2 = TOps.Fma(TOps.Load(in a2, off), bv, s2);
            s3 = TOps.Fma(TOps.Load(in a3, off), bv, s3);
        }

        if (whole != (nuint)k)
        {
            // the overlapping last vector: its lanes below `counted` were summed above
            nuint off = (nuint)k - w;
            int counted = (int)(whole - off);
            TV bv = b.At(off);
            s0 = TOps.Fma(TOps.ZeroBelow(TOps.Load(in a, off), counted), bv, s0);
            s1 = TOps.Fma(TOps.ZeroBelow(TOps.Load(in a1, off), counted), bv, s1);
            s2 = TOps.Fma(TOps.ZeroBelow(TOps.Load(in a2, off), counted), bv, s2);
            s3 = TOps.Fma(TOps.ZeroBelow(TOps.Load(in a3, off), counted), bv, s3);
        }

        c = TOps.Sum(s0);
        Unsafe.Add(ref c, ldc) = TOps.Sum(s1);
        Unsafe.Add(ref c, 2 * ldc) = TOps.Sum(s2);
        Unsafe.Add(ref c, 3 * ldc) = TOps.Sum(s3);
    }

    /// <summary>Σ_p a[p] · b[p] in the order of <see cref="Dot4"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot1<TOps, TV, TElem, TB>(ref readonly float a, TB b, int k)
        where TOps : ISimd<TV>
        where TV : struct
        where TB : IRowVectors<TB, TElem, TV>, allows ref struct
    {
        nuint w = (nuint)TOps.Count;
        TV s = TOps.Zero;
        nuint whole = (nuint)k / w * w;
        for (nuint off = 0; off < whole; off += w)
        {
            s = TOps.Fma(TOps.Load(in a, off), b.At(off), s);
        }

        if (whole != (nuint)k)
        {
            nuint off = (nuint)k - w;
            s = TOps.Fma(TOps.ZeroBelow(TOps.Load(in a, off), (int)(whole - off)), b.At(off), s);
        }

        return TOps.Sum(s);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddNN<TOps, TV>(Span<float> c, int ldc, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        int m, int n, int k)
        where TOps : ISimd<TV>
        where TV : struct
    {
        ref float c0 = ref MemoryMarshal.GetReference(c);
        ref readonly float a0 = ref MemoryMarshal.GetReference(a);
        ref readonly float b0 = ref MemoryMarshal.GetReference(b);
        nuint w = (nuint)TOps.Count;
        nuint whole = (nuint)n / w * w, last = (nuint)n - w; // a last vector overlapping the whole ones when n % W != 0
        int i = 0;
        for (; i + 4 <= m; i += 4)
        {
            ref float ci = ref Unsafe.Add(ref c0, (nint)i * ldc);
            ref readonly float ai = ref Unsafe.Add(ref Unsafe.AsRef(in a0), (nint)i * lda);
            TV t0 = TOps.Zero, t1 = TOps.Zero, t2 = TOps.Zero, t3 = TOps.Zero;
            if (whole != (nuint)n)
            {
                Column4<TOps, TV>(ref ci, ldc, in ai, lda, in b0, ldb, k, last, out t0, out t1, out t2, out t3); // from c as given
            }

            for (nuint off = 0; off < whole; off += w)
            {
                Column4<TOps, TV>(ref ci, ldc, in ai, lda, in b0, ldb, k, off, out TV s0, out TV s1, out TV s2, out TV s3);
                TOps.Store(s0, ref ci, off);
                TOps.Store(s1, ref Unsafe.Add(ref ci, ldc), off);
                TOps.Store(s2, ref Unsafe.Add(ref ci, 2 * (nint)ldc), off);
                TOps.Store(s3, ref Unsafe.Add(ref ci, 3 * (nint)ldc), off);
            }

            if (whole != (nuint)n)
            {
                TOps.Store(t0, ref ci, last); // its overlapped lanes hold the bits just stored: the same FMA chains
                TOps.Store(t1, ref Unsafe.Add(ref ci, ldc), last);
                TOps.Store(t2, ref Unsafe.Add(ref ci, 2 * (nint)ldc), last);
                TOps.Store(t3, ref Unsafe.Add(ref ci, 3 * (nint)ldc), last);
            }
        }

        for (; i < m; i++)
        {
            ref float ci = ref Unsafe.Add(ref c0, (nint)i * ldc);
            ref readonly float ai = ref Unsafe.Add(ref Unsafe.AsRef(in a0), (nint)i * lda);
            TV t = whole != (nuint)n ? Column1<TOps, TV>(in ci, in ai, in b0, ldb, k, last) : TOps.Zero;
            for (nuint off = 0; off < whole; off += w)
            {
                TOps.Store(Column1<TOps, TV>(in ci, in ai, in b0, ldb, k, off), ref ci, off);
            }

            if (whole != (nuint)n)
            {
                TOps.Store(t, ref ci, last);
            }
        }
    }

    /// <summary>c[r, off..off+W) + Σ_p a[r, p] · b[p, off..off+W) for the rows r = 0..3, one FMA chain per element.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Column4<TOps, TV>(ref float c, nint ldc, ref readonly float a, nint lda, ref readonly float b, nint ldb,
        int k, nuint off, out TV s0, out TV s1, out TV s2, out TV s3)
        where TOps : ISimd<TV>
        where TV : struct
    {
        s0 = TOps.Load(in c, off);
        s1 = TOps.Load(in Unsafe.Add(ref c, ldc), off);
        s2 = TOps.Load(in Unsafe.Add(ref c, 2 * ldc), off);
        s3 = TOps.Load(in Unsafe.Add(ref c, 3 * ldc), off);
        ref float ar = ref Unsafe.AsRef(in a);
        for (int p = 0; p < k; p++)
        {
            TV bv = TOps.Load(in Unsafe.Add(ref Unsafe.AsRef(in b), p * ldb), off);
            s0 = TOps.Fma(TOps.Splat(Unsafe.Add(ref ar, p)), bv, s0);
            s1 = TOps.Fma(TOps.Splat(Unsafe.Add(ref ar, lda + p)), bv, s1);
            s2 = TOps.Fma(TOps.Splat(Unsafe.Add(ref ar, 2 * lda + p)), bv, s2);
            s3 = TOps.Fma(TOps.Splat(Unsafe.Add(ref ar, 3 * lda + p)), bv, s3);
        }
    }

    /// <summary>One row of <see cref="Column4"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV Column1<TOps, TV>(ref readonly float c, ref readonly float a, ref readonly float b, nint ldb, int k, nuint off)
        where TOps : ISimd<TV>
        where TV : struct
    {
        TV s = TOps.Load(in c, off);
        for (int p = 0; p < k; p++)
        {
            s = TOps.Fma(TOps.Splat(Unsafe.Add(ref Unsafe.AsRef(in a), p)), TOps.Load(in Unsafe.Add(ref Unsafe.AsRef(in b), p * ldb), off), s);
        }

        return s;
    }
}
