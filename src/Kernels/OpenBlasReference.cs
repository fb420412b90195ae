using System.Runtime.InteropServices;

namespace K2RL.Kernels;

/// <summary>
/// OpenBLAS's cblas_sgemm, loaded at run time from a shared library, for benchmarks that compare against it
/// in the same process (trials interleaved, so both see the same machine load). Not used by any kernel.
/// </summary>
public sealed unsafe class OpenBlasReference
{
    private const int RowMajor = 101, NoTrans = 111, Trans = 112;

    private readonly delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> sgemm;

    private OpenBlasReference(nint library)
    {
        sgemm = (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)
            NativeLibrary.GetExport(library, "cblas_sgemm");
        if (NativeLibrary.TryGetExport(library, "openblas_set_num_threads", out nint setThreads))
        {
            SetThreads = (delegate* unmanaged<int, void>)setThreads;
        }

        if (NativeLibrary.TryGetExport(library, "openblas_get_corename", out nint coreName))
        {
            CoreName = Marshal.PtrToStringAnsi(((delegate* unmanaged<nint>)coreName)()) ?? "";
        }

        if (NativeLibrary.TryGetExport(library, "openblas_get_config", out nint config))
        {
            Config = Marshal.PtrToStringAnsi(((delegate* unmanaged<nint>)config)()) ?? "";
        }
    }

    /// <summary>The kernel family OpenBLAS picked for this CPU (e.g. "Zen", "Haswell", "SkylakeX").</summary>
    public string CoreName { get; } = "";

    public string Config { get; } = "";

    private delegate* unmanaged<int, void> SetThreads { get; }

    /// <summary>Loads the library at <paramref name="path"/>; throws <see cref="ArgumentException"/> when it has no cblas_sgemm.</summary>
    public static OpenBlasReference Load(string path, int threads)
    {
        if (!NativeLibrary.TryLoad(path, out nint library) || !NativeLibrary.TryGetExport(library, "cblas_sgemm", out _))
        {
            throw new ArgumentException($"'{path}' is not a loadable BLAS with cblas_sgemm", nameof(path));
        }

        var blas = new OpenBlasReference(library);
        if (blas.SetThreads != null)
        {
            blas.SetThreads(threads);
        }

        return blas;
    }

    /// <summary>C[m, n] = op(A)·op(B) on dense row-major operands stored as <see cref="GemmOp"/> describes.</summary>
    public void Multiply(GemmOp op, float[] c, float[] a, float[] b, int m, int n, int k)
    {
        Gemm.Validate(op, c.Length, n, a.Length, op == GemmOp.TN ? m : k, b.Length, op == GemmOp.NT ? k : n, m, n, k);
        fixed (float* pc = c, pa = a, pb = b)
        {
            sgemm(RowMajor, op == GemmOp.TN ? Trans : NoTrans, op == GemmOp.NT ? Trans : NoTrans, m, n, k, 1f,
                pa, op == GemmOp.TN ? m : k, pb, op == GemmOp.NT ? k : n, 0f, pc, n);
        }
    }
}
