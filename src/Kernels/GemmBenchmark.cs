using System.Diagnostics;

namespace K2RL.Kernels;

/// <summary>One GEMM shape to time: C[m, n] = op(A)·op(B) with reduction k; <see cref="Group"/> says where it comes from.</summary>
public sealed record GemmShape(string Group, int M, int N, int K)
{
    /// <summary>The shapes `k2rl bench kernels` times: squares, the k2-nano token GEMMs (M = 2048) and expert batches (M = 256).</summary>
    public static IReadOnlyList<GemmShape> Standard { get; } = BuildStandard();

    public double Flops => 2.0 * M * N * K;

    private static List<GemmShape> BuildStandard()
    {
        var shapes = new List<GemmShape> { new("square", 512, 512, 512), new("square", 1024, 1024, 1024), new("square", 2048, 2048, 2048) };
        // in → out projections over 2048 tokens: C[2048, out] with reduction over in.
        foreach (var (din, dout) in new[] { (256, 768), (768, 256), (256, 128), (128, 192), (256, 80), (64, 256), (128, 256), (256, 512) })
        {
            shapes.Add(new("k2-nano", 2048, dout, din));
        }

        foreach (var (din, dout) in new[] { (256, 128), (128, 256) })
        {
            shapes.Add(new("expert", 256, dout, din));
        }

        return shapes;
    }
}

/// <summary>
/// A timed GEMM: the best of several trials, the scalar twin where it was run, and OpenBLAS where it was loaded
/// (timed in the same trials, interleaved); null where not run. <c>MedianSpeedupOverOpenBlas</c> is the median over
/// trials of (OpenBLAS time / K2RL time) within one trial: the steadiest comparison on a loaded machine, where
/// each library's best-of figure depends on when the other load happened to pause.
/// </summary>
public sealed record GemmTiming(GemmOp Op, GemmShape Shape, int Threads, double Seconds, double? NaiveSeconds,
    double? OpenBlasSeconds = null, double? MedianSpeedupOverOpenBlas = null)
{
    public double GFlops => Shape.Flops / Seconds / 1e9;

    public double? NaiveGFlops => NaiveSeconds is { } s ? Shape.Flops / s / 1e9 : null;

    public double? OpenBlasGFlops => OpenBlasSeconds is { } s ? Shape.Flops / s / 1e9 : null;
}

/// <summary>Times <see cref="Gemm.Multiply(GemmOp, Span{float}, int, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, int, int, int, bool, int)"/> on dense operands.</summary>
public static class GemmBenchmark
{
    /// <summary>The fewest warm-up calls per shape (all of them with --quick, whose trials last 0 s).</summary>
    public const int MinWarmupCalls = 3;

    /// <summary>How many trial lengths each shape is warmed up for before its first timed trial.</summary>
    public const double WarmupTrials = 3;

    /// <summary>
    /// Times one op on one shape: after a warm-up (<see cref="Timer"/>), <paramref name="trials"/> trials of enough repetitions to
    /// last about <paramref name="trialSeconds"/>; the best trial counts (other work on the machine only slows runs).
    /// The scalar twin is timed once when <paramref name="naive"/>.
    /// </summary>
    public static GemmTiming Run(GemmOp op, GemmShape shape, int threads, int trials, double trialSeconds, bool naive,
        OpenBlasReference? openBlas = null)
    {
        int m = shape.M, n = shape.N, k = shape.K;
        var a = Fill(m * k, 1);
        var b = Fill(k * n, 2);
        var c = new float[m * n];
        int lda = op == GemmOp.TN ? m : k;
        int ldb = op == GemmOp.NT ? k : n;
        var ours = Timer(() => Gemm.Multiply(op, c, n, a, lda, b, ldb, m, n, k, false, threads), trialSeconds);
        var theirs = openBlas is null ? null : Timer(() => openBlas.Multiply(op, c, a, b, m, n, k), trialSeconds);
        for (int t = 0; t < trials; t++)
        {
            ours.Trial();
            theirs?.Trial();
        }

        double? naiveSeconds = null;
        if (naive)
        {
            var sw = Stopwatch.StartNew();
            ScalarKernels.Gemm(op, c, n, a, lda, b, ldb, m, n, k, false);
            naiveSeconds = sw.Elapsed.TotalSeconds;
        }

        double? speedup = null;
        if (theirs is not null)
        {
            var ratios = theirs.Times.Zip(ours.Times, (t, o) => t / o).Order().ToList();
            speedup = ratios[ratios.Count / 2];
        }

        return new GemmTiming(op, shape, threads, ours.Best, naiveSeconds, theirs?.Best, speedup);
    }

    /// <summary>
    /// Warms a call up, then sizes its trials. The warm-up runs the call for <see cref="WarmupTrials"/> trial lengths
    /// and at least <see cref="MinWarmupCalls"/> times: one call was not enough, since the first shape timed (nn 512³)
    /// read a third of the same shape's nt/tn figure in the same run, while tiered JIT, the worker threads and the
    /// clock were still coming up. A trial is sized from the last warm call, not the first.
    /// </summary>
    private static BestOf Timer(Action call, double trialSeconds)
    {
        var warm = Stopwatch.StartNew();
        double once;
        int calls = 0;
        do
        {
            long t0 = Stopwatch.GetTimestamp();
            call();
            once = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            calls++;
        }
        while (calls < MinWarmupCalls || warm.Elapsed.TotalSeconds < WarmupTrials * trialSeconds);

        return new BestOf(call, Math.Max(1, (int)(trialSeconds / Math.Max(once, 1e-6))));
    }

    /// <summary>Repeats a call <paramref name="reps"/> times per trial and keeps the fastest trial's time per call.</summary>
    private sealed class BestOf(Action call, int reps)
    {
        public List<double> Times { get; } = [];

        public double Best => Times.Min();

        public void Trial()
        {
            var sw = Stopwatch.StartNew();
            for (int r = 0; r < reps; r++)
            {
                call();
            }

            Times.Add(sw.Elapsed.TotalSeconds / reps);
        }
    }

    private static float[] Fill(int n, int seed)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            x[i] = (float)(rng.NextDouble() - 0.5);
        }

        return x;
    }
}
