using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace K2RL.Kernels;

public static partial class TopK
{
    /// <summary>
    /// One pass per row keeping the best k so far in order (insertion; equal scores keep the lower index first,
    /// NaN never displaces a number). Once k are held, whole vectors with no score above the k-th are skipped.
    /// </summary>
    private static void SelectFast(Span<int> indices, ReadOnlySpan<float> scores, int rows, int n, int k)
    {
        Validate(indices.Length, scores.Length, rows, n, k);
        if (k == 0)
        {
            return;
        }

        Span<float> kept = k <= 256 ? stackalloc float[k] : new float[k];   // [k] scores of the kept indices
        bool wide = SimdSelect.Current >= SimdWidth.W256;
        bool narrow = SimdSelect.Current >= SimdWidth.W128;
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> row = scores.Slice(r * n, n);
            Span<int> idx = indices.Slice(r * k, k);
            ref float row0 = ref MemoryMarshal.GetReference(row);
            int count = 0;
            int j = 0;
            while (j < n)
            {
                if (count == k && !float.IsNaN(kept[k - 1]))
                {
                    float t = kept[k - 1];
                    if (wide && j + 8 <= n && !Vector256.GreaterThanAny(Vector256.LoadUnsafe(ref row0, (nuint)j), Vector256.Create(t)))
                    {
                        j += 8;
                        continue;
                    }

                    if (narrow && j + 4 <= n && !Vector128.GreaterThanAny(Vector128.LoadUnsafe(ref row0, (nuint)j), Vector128.Create(t)))
                    {
                        j += 4;
                        continue;
                    }
                }

                float v = row[j];
                if (count < k || Before(v, kept[k - 1]))
                {
                    int pos = count < k ? count++ : k - 1;
                    while (pos > 0 && Before(v, kept[pos - 1]))
                    {
                        kept[pos] = kept[pos - 1];
                        idx[pos] = idx[pos - 1];
                        pos--;
                    }

                    kept[pos] = v;
                    idx[pos] = j;
                }

                j++;
            }
        }
    }
}

/// <summary>Buffers Newton–Schulz reuses between calls (X, XXᵀ, the polynomial in it, the next X).</summary>
public sealed class NewtonSchulzWorkspace
{
    [ThreadStatic]
    private static NewtonSchulzWorkspace? perThread;

    private float[] x = [];
    private float[] a = [];
    private float[] poly = [];
    private float[] next = [];

    /// <summary>The calling thread's own workspace (what the overload without one uses).</summary>
    public static NewtonSchulzWorkspace ForCurrentThread => perThread ??= new NewtonSchulzWorkspace();

    internal (float[] X, float[] A, float[] Poly, float[] Next) Get(int m, int n)
    {
        Grow(ref x, m * n);
        Grow(ref a, m * m);
        Grow(ref poly, m * m);
        Grow(ref next, m * n);
        return (x, a, poly, next);
    }

    private static void Grow(ref float[] buffer, int size)
    {
        if (buffer.Length < size)
        {
            buffer = new float[size];
        }
    }
}

public static partial class NewtonSchulz
{
    /// <summary>
    /// Newton–Schulz 5 (SPEC §2) on the fast GEMM, with caller-provided buffers so a step of Muon allocates
    /// nothing. X = G/(‖G‖_F + 1e-7), transposed when rows &gt; cols (X is [m, n], m ≤ n); each step
    /// A = X Xᵀ [m, m], P = bA + cA² [m, m], X ← aX + P X. A and A² = A Aᵀ are symmetric, so both come from
    /// <see cref="Gemm.SymmetricProduct"/> (one triangle of tiles, mirrored). The GEMMs use up to
    /// <paramref name="maxThreads"/> threads (Muon passes 1 and runs many matrices side by side); the bits do not
    /// depend on it.
    /// </summary>
    public static void Orthogonalize(Span<float> output, ReadOnlySpan<float> g, int rows, int cols,
        NewtonSchulzWorkspace workspace, int steps, int maxThreads)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        Validate(output.Length, g.Length, rows, cols, steps);
        if (maxThreads < 1)
        {
            throw new ArgumentException($"Newton–Schulz: maxThreads must be >= 1, got {maxThreads}", nameof(maxThreads));
        }

        if (SimdSelect.Current == SimdWidth.Scalar)
        {
            ScalarKernels.NewtonSchulz5(output, g, rows, cols, steps);
            return;
        }

        bool transpose = rows > cols;
        int m = transpose ? cols : rows;
        int n = transpose ? rows : cols;
        int size = m * n;
        var (xa, aa, pa, na) = workspace.Get(m, n);
        Span<float> x = xa.AsSpan(0, size), next = na.AsSpan(0, size);
        Span<float> a = aa.AsSpan(0, m * m), poly = pa.AsSpan(0, m * m);
        ReadOnlySpan<float> gv = g[..size];
        float inv = 1f / (TensorPrimitives.Norm(gv) + 1e-7f);
        if (transpose)
        {
            Transpose(x, gv, rows, cols, inv);
        }
        else
        {
            TensorPrimitives.Multiply(gv, inv, x);
        }

        for (int s = 0; s < steps; s++)
        {
            Gemm.SymmetricProduct(a, m, x, n, m, n, maxThreads);         // A = X Xᵀ
            Gemm.SymmetricProduct(poly, m, a, m, m, m, maxThreads);      // A² = A Aᵀ
            TensorPrimitives.Multiply(poly, C, poly);
            TensorPrimitives.MultiplyAdd(a, B, poly, poly);              // P = bA + cA²
            TensorPrimitives.Multiply(x, A, next);
            Gemm.Multiply(GemmOp.NN, next, n, poly, m, x, n, m, n, m, accumulate: true, maxThreads); // aX + P X
            Span<float> swap = x;
            x = next;
            next = swap;
        }

        if (transpose)
        {
            Transpose(output, x, cols, rows, 1f);
        }
        else
        {
            x.CopyTo(output);
        }
    }

    /// <summary>dst[cols, rows] = scale · src[rows, cols]ᵀ, in 16×16 tiles so both sides stay in L1.</summary>
    private static unsafe void Transpose(Span<float> dst, ReadOnlySpan<float> src, int rows, int cols, float scale)
    {
        const int Tile = 16;
        if (dst.Length < rows * cols || src.Length < rows * cols)
        {
            throw new ArgumentException($"Newton–Schulz transpose: buffers shorter than [{rows}, {cols}]");
        }

        fixed (float* d = dst, s = src)
        {
            for (int i0 = 0; i0 < rows; i0 += Tile)
            {
                int i1 = Math.Min(rows, i0 + Tile);
                for (int j0 = 0; j0 < cols; j0 += Tile)
                {
                    int j1 = Math.Min(cols, j0 + Tile);
                    for (int i = i0; i < i1; i++)
                    {
                        float* srcRow = s + (long)i * cols;
                        for (int j = j0; j < j1; j++)
                        {
                            d[(long)j * rows + i] = srcRow[j] * scale;
                        }
                    }
                }
            }
        }
    }
}
