using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace K2RL.Kernels;

/// <summary>
/// The packed GEMM (BLIS loop order). For each NC-wide column block of B and each KC-deep slice of the reduction,
/// B is packed into NR-wide micro-panels; for each MC-tall row block, A is packed into MR-tall micro-panels; an
/// MR×NR micro-kernel keeps its C tile in 12 vector registers over the whole slice (A broadcast, B loaded).
/// Every C element is reduced in the same order whatever the tile, the block or the thread that computes it:
/// one FMA chain over p in [pc, pc+KC) per slice, slices added to C in ascending order. So the bits depend only
/// on the vector width, never on the thread count or the partitioning.
/// </summary>
public static partial class Gemm
{
    /// <summary>Rows of the micro-tile (A broadcasts); the tile is MR × (2 vectors).</summary>
    internal const int MR = 6;

    /// <summary>Reduction slice: an A micro-panel (6 KB) and a B micro-panel (8–32 KB) stay in L1.</summary>
    internal const int KC = 256;

    /// <summary>Rows of A packed at once (MC × KC × 4 = 144 KB, in L2).</summary>
    internal const int MC = 144;

    /// <summary>Columns of B packed at once (KC × NC × 4 = 2 MB, in L3); a multiple of every NR.</summary>
    internal const int NC = 2048;

    /// <summary>Below this many flops (2mnk) one thread is faster than waking another.</summary>
    internal const long ParallelMinFlops = 1L << 21;

    [ThreadStatic]
    private static float[]? packA;

    [ThreadStatic]
    private static float[]? packB;

    /// <summary>The packed path on all operands already validated and pinned.</summary>
    private static unsafe void MultiplyPacked(GemmOp op, float* c, int ldc, float* a, int lda, float* b, int ldb,
        int m, int n, int k, bool accumulate, int maxThreads, SimdWidth width)
    {
        int nr = 2 * VectorCount(width);
        bool splitM = m >= n;
        int units = splitM ? (m + MR - 1) / MR : (n + nr - 1) / nr;
        long flops = 2L * m * n * k;
        int threads = flops < ParallelMinFlops ? 1 : Math.Max(1, Math.Min(maxThreads, units));
        int parts = PartsFor(threads, splitM ? m : n, units);
        if (parts == 1)
        {
            BlockedFor(width, op, c, ldc, a, lda, b, ldb, m, n, k, accumulate, lowerOnly: false); // no job object: small GEMMs allocate nothing
            return;
        }

        var job = threadJob ??= new Job(); // one per calling thread, reused: a parallel GEMM allocates nothing either
        job.Set(op, c, ldc, a, lda, b, ldb, m, n, k, accumulate, width, splitM, units, splitM ? MR : nr, parts);
        ForkJoinPool.Shared.For(parts, job.Body, threads, linger: true);
    }

    [ThreadStatic]
    private static Job? threadJob;

    /// <summary>The blocked loop at the given vector width.</summary>
    private static unsafe void BlockedFor(SimdWidth width, GemmOp op, float* c, int ldc, float* a, int lda, float* b, int ldb,
        int m, int n, int k, bool accumulate, bool lowerOnly)
    {
        switch (width)
        {
            case SimdWidth.W512:
                Blocked<Simd512, System.Runtime.Intrinsics.Vector512<float>>(op, c, ldc, a, lda, b, ldb, m, n, k, accumulate, lowerOnly);
                break;
            case SimdWidth.W256:
                Blocked<Simd256, System.Runtime.Intrinsics.Vector256<float>>(op, c, ldc, a, lda, b, ldb, m, n, k, accumulate, lowerOnly);
                break;
            default:
                Blocked<Simd128, System.Runtime.Intrinsics.Vector128<float>>(op, c, ldc, a, lda, b, ldb, m, n, k, accumulate, lowerOnly);
                break;
        }
    }

    /// <summary>Each part repacks all of B, so parts keep at least this many rows (or columns) of C.</summary>
    internal const int MinPartExtent = 512;

    /// <summary>
    /// Up to 4 parts per thread where each part keeps ≥ <see cref="MinPartExtent"/> rows: threads claim parts as they
    /// come free, so a thread the OS parks for a while (a loaded machine) delays the GEMM by one part, not half.
    /// A function of the shapes and the thread count only.
    /// </summary>
    private static int PartsFor(int threads, int extent, int units)
    {
        if (threads <= 1)
        {
            return 1;
        }

        int perThread = Math.Clamp(extent / (MinPartExtent * threads), 1, 4);
        return Math.Min(units, threads * perThread);
    }

    private static int VectorCount(SimdWidth width) => width switch
    {
        SimdWidth.W512 => 16,
        SimdWidth.W256 => 8,
        _ => 4,
    };

    /// <summary>One GEMM cut into parts along M (or N): part t computes a fixed rectangle of C.</summary>
    private sealed unsafe class Job
    {
        public readonly Action<int, int> Body;
        private GemmOp Op;
        private float* C;
        private float* A;
        private float* B;
        private int Ldc;
        private int Lda;
        private int Ldb;
        private int M;
        private int N;
        private int K;
        private bool Accumulate;
        private SimdWidth Width;
        private bool SplitM;
        private int Units;
        private int UnitSize;
        private int Parts;

        public Job() => Body = (part, _) => Run(part, Parts);

        public void Set(GemmOp op, float* c, int ldc, float* a, int lda, float* b, int ldb, int m, int n, int k,
            bool accumulate, SimdWidth width, bool splitM, int units, int unitSize, int parts)
        {
            C = c;
            A = a;
            B = b;
            (Op, Ldc, Lda, Ldb, M, N, K) = (op, ldc, lda, ldb, m, n, k);
            (Accumulate, Width, SplitM, Units, UnitSize, Parts) = (accumulate, width, splitM, units, unitSize, parts);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Run(int part, int parts)
        {
            int u0 = (int)((long)Units * part / parts);
            int u1 = (int)((long)Units * (part + 1) / parts);
            int extent = SplitM ? M : N;
            int lo = u0 * UnitSize;
            int hi = Math.Min(extent, u1 * UnitSize);
            if (hi <= lo)
            {
                return;
            }

            float* a = A, b = B, c = C;
            int m = M, n = N;
            if (SplitM)
            {
                a += Op == GemmOp.TN ? lo : (long)lo * Lda;
                c += (long)lo * Ldc;
                m = hi - lo;
            }
            else
            {
                b += Op == GemmOp.NT ? (long)lo * Ldb : lo;
                c += lo;
                n = hi - lo;
            }

            BlockedFor(Width, Op, c, Ldc, a, Lda, b, Ldb, m, n, K, Accumulate, lowerOnly: false);
        }
    }

    /// <summary>A 64-byte aligned pointer into a pinned, per-thread buffer of at least <paramref name="floats"/>.</summary>
    private static unsafe float* Buffer(ref float[]? buffer, int floats)
    {
        if (buffer is null || buffer.Length < floats + 16)
        {
            buffer = GC.AllocateUninitializedArray<float>(floats + 16, pinned: true);
        }

        nint p = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
        return (float*)((p + 63) & ~(nint)63);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Blocked<TOps, TV>(GemmOp op, float* c, int ldc, float* a, int lda, float* b, int ldb,
        int m, int n, int k, bool accumulate, bool lowerOnly)
        where TOps : ISimd<TV>
        where TV : struct
    {
        // lowerOnly: tiles wholly above the diagonal (first column > last row) are skipped (SymmetricProduct).
        int nr = 2 * TOps.Count;
        float* ap = Buffer(ref packA, MC * KC + 16);
        float* bp = Buffer(ref packB, KC * NC);
        for (int jc = 0; jc < n; jc += NC)
        {
            int nc = Math.Min(NC, n - jc);
            for (int pc = 0; pc < k; pc += KC)
            {
                int kc = Math.Min(KC, k - pc);
                GemmPack.PackB(op, b, ldb, pc, jc, kc, nc, nr, bp);
                bool overwrite = pc == 0 && !accumulate;
                for (int ic = 0; ic < m; ic += MC)
                {
                    int mc = Math.Min(MC, m - ic);
                    GemmPack.PackA(op, a, lda, ic, pc, mc, kc, ap);
                    for (int jr = 0; jr < nc; jr += nr)
                    {
                        int cols = Math.Min(nr, nc - jr);
                        float* bPanel = bp + (long)jr * kc;
                        for (int ir = 0; ir < mc; ir += MR)
                        {
                            int rows = Math.Min(MR, mc - ir);
                            if (lowerOnly && jc + jr > ic + ir + rows - 1)
                            {
                                continue; // the tile lies wholly above the diagonal
                            }

                            float* aPanel = ap + (long)ir * kc;
                            float* cTile = c + (long)(ic + ir) * ldc + jc + jr;
                            if (rows == MR && cols == nr)
                            {
                                MicroKernel<TOps, TV>(kc, aPanel, bPanel, cTile, ldc, overwrite);
                            }
                            else
                            {
                                EdgeTile<TOps, TV>(kc, aPanel, bPanel, cTile, ldc, overwrite, rows, cols);
                            }
                        }
                    }
                }
            }
        }
    }

    /// <summary>A partial tile: the full tile goes to a scratch tile, the valid part is added to C.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void EdgeTile<TOps, TV>(int kc, float* aPanel, float* bPanel, float* c, int ldc, bool overwrite,
        int rows, int cols)
        where TOps : ISimd<TV>
        where TV : struct
    {
        int nr = 2 * TOps.Count;
        float* tile = stackalloc float[MR * 32];
        MicroKernel<TOps, TV>(kc, aPanel, bPanel, tile, nr, overwrite: true);
        for (int r = 0; r < rows; r++)
        {
            float* dst = c + (long)r * ldc;
            float* src = tile + r * nr;
            for (int j = 0; j < cols; j++)
            {
                dst[j] = overwrite ? src[j] : dst[j] + src[j];
            }
        }
    }

    /// <summary>
    /// C[6, 2W] (+)= Apanel[kc, 6]ᵀ · Bpanel[kc, 2W]: 12 accumulators, one FMA chain per element over p ascending.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void MicroKernel<TOps, TV>(int kc, float* ap, float* bp, float* c, nint ldc, bool overwrite)
        where TOps : ISimd<TV>
        where TV : struct
    {
        nuint w = (nuint)TOps.Count;
        nint nr = 2 * TOps.Count;
        TV c00 = TOps.Zero, c01 = TOps.Zero, c10 = TOps.Zero, c11 = TOps.Zero, c20 = TOps.Zero, c21 = TOps.Zero;
        TV c30 = TOps.Zero, c31 = TOps.Zero, c40 = TOps.Zero, c41 = TOps.Zero, c50 = TOps.Zero, c51 = TOps.Zero;
        for (int p = 0; p < kc; p++)
        {
            TV b0 = TOps.Load(in *bp, 0);
            TV b1 = TOps.Load(in *bp, w);
            TV av = TOps.Splat(ap[0]);
            c00 = TOps.Fma(av, b0, c00);
            c01 = TOps.Fma(av, b1, c01);
            av = TOps.Splat(ap[1]);
            c10 = TOps.Fma(av, b0, c10);
            c11 = TOps.Fma(av, b1, c11);
            av = TOps.Splat(ap[2]);
            c20 = TOps.Fma(av, b0, c20);
            c21 = TOps.Fma(av, b1, c21);
            av = TOps.Splat(ap[3]);
            c30 = TOps.Fma(av, b0, c30);
            c31 = TOps.Fma(av, b1, c31);
            av = TOps.Splat(ap[4]);
            c40 = TOps.Fma(av, b0, c40);
            c41 = TOps.Fma(av, b1, c41);
            av = TOps.Splat(ap[5]);
            c50 = TOps.Fma(av, b0, c50);
            c51 = TOps.Fma(av, b1, c51);
            ap += MR;
            bp += nr;
        }

        StoreRow<TOps, TV>(c, w, c00, c01, overwrite);
        StoreRow<TOps, TV>(c + ldc, w, c10, c11, overwrite);
        StoreRow<TOps, TV>(c + 2 * ldc, w, c20, c21, overwrite);
        StoreRow<TOps, TV>(c + 3 * ldc, w, c30, c31, overwrite);
        StoreRow<TOps, TV>(c + 4 * ldc, w, c40, c41, overwrite);
        StoreRow<TOps, TV>(c + 5 * ldc, w, c50, c51, overwrite);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreRow<TOps, TV>(float* c, nuint w, TV v0, TV v1, bool overwrite)
        where TOps : ISimd<TV>
        where TV : struct
    {
        if (!overwrite)
        {
            v0 = TOps.Add(TOps.Load(in *c, 0), v0);
            v1 = TOps.Add(TOps.Load(in *c, w), v1);
        }

        TOps.Store(v0, ref *c, 0);
        TOps.Store(v1, ref *c, w);
    }
}
