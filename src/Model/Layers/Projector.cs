using K2RL.Kernels;

namespace K2RL.Model.Layers;

/// <summary>
/// output[n, Out] = input[n, In] · W[Out, In]ᵀ (assigned) with W at an offset in a parameter buffer: the products
/// of the MLA projections, o_proj, the dense MLP and the head. <see cref="Packed"/> always runs the packed GEMM
/// on the kernel threads (<see cref="Linear.Forward"/>; training). An instance made with few-row parts does
/// that for many rows (prefill) and, for few rows (decode, prefill's last-position head), runs the same GEMM one
/// thread per call over column parts on <see cref="ForkJoinPool"/>, so a decode step keeps one pool busy instead
/// of two pools on the same cores (the kernel threads' idle spin between GEMMs took ~19 % of decode CPU while
/// the model threads ran the experts; docs/BENCHMARKS.md "Rollout"). Every element's reduction is the packed
/// GEMM's whatever the column range or the number of rows (its order depends on the reduction length alone), so
/// the bits equal Linear.Forward's and a row's bits do not depend on the other rows. (The few-row SmallGemm was
/// tried for decode's projections: no faster at batch 32 and ~10 % slower decode at batch 128;
/// docs/BENCHMARKS.md.) An instance holds the product in flight for its thread bodies: one caller at a time.
/// </summary>
public sealed class Projector
{
    private readonly bool fewRowParts;
    private readonly Action<int, int> part;

    // the column-part product in flight (see Forward)
    private float[] output = [], input = [], parameters = [];
    private int weightOffset, rows, inFeatures, outFeatures, parts;

    /// <summary>Always the packed GEMM on the kernel threads; holds no state, so any caller may share it.</summary>
    public static Projector Packed { get; } = new(fewRowParts: false);

    public Projector(bool fewRowParts)
    {
        this.fewRowParts = fewRowParts;
        part = Part;
    }

    public void Forward(float[] output, float[] input, float[] parameters, int weightOffset, int n, int In, int Out)
    {
        if (!fewRowParts || n >= KernelThreadsMinRows)
        {
            Linear.Forward(output, input, parameters.AsSpan(weightOffset, Out * In), n, In, Out);
            return;
        }

        (this.output, this.input, this.parameters) = (output, input, parameters);
        (this.weightOffset, rows, inFeatures, outFeatures) = (weightOffset, n, In, Out);
        long flops = 2L * n * In * Out;
        parts = flops < ParallelMinFlops ? 1 : Math.Min(MaxParts, (Out + PartColumns - 1) / PartColumns);
        ForkJoinPool.Shared.For(parts, part, parallel: parts > 1);
        this.output = this.input = this.parameters = [];
    }

    /// <summary>Products of at least this many rows run on the kernel threads (prefill).</summary>
    private const int KernelThreadsMinRows = 192;

    /// <summary>Products below this many flops run on the calling thread alone.</summary>
    private const long ParallelMinFlops = 1L << 19;

    /// <summary>Column parts: at most this many, each a multiple of 16 columns (the GEMM tile).</summary>
    private const int MaxParts = 8, PartColumns = 32;

    private void Part(int index, int worker)
    {
        int Out = outFeatures, In = inFeatures;
        int per = (Out + parts - 1) / parts;
        per = (per + 15) / 16 * 16;
        int j0 = Math.Min(Out, index * per), j1 = Math.Min(Out, j0 + per);
        if (j1 <= j0)
        {
            return;
        }

        Gemm.Multiply(GemmOp.NT, output.AsSpan(j0), Out, input, In, parameters.AsSpan(weightOffset + j0 * In, (j1 - j0) * In), In,
            rows, j1 - j0, In, false, maxThreads: 1);
    }
}
