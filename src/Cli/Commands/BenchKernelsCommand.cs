using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using K2RL.Kernels;
using Spectre.Console;

namespace K2RL.Cli.Commands;

/// <summary>Options of `k2rl bench kernels`.</summary>
public sealed record BenchKernelsOptions(bool Json, bool Quick, int Threads, string? OpenBlas = null);

/// <summary>
/// `k2rl bench kernels [--json] [--quick] [--threads N]`: GEMM GFLOP/s on the standard shapes in the nn, nt and tn
/// forms, beside the scalar twin where that finishes in reasonable time (≤ 300 MFLOP; ≤ 20 MFLOP with --quick).
/// Every shape is warmed up before it is timed (<see cref="GemmBenchmark.WarmupTrials"/> trial lengths).
/// Results go to stdout (a table, or one JSON object), progress to stderr.
/// </summary>
public sealed class BenchKernelsCommand : ICommandProvider
{
    /// <summary>The scalar twin runs at about 1 GFLOP/s: it is timed only on shapes up to this many flops.</summary>
    public const double NaiveMaxFlops = 300e6;

    public const double QuickNaiveMaxFlops = 20e6;

    public string Group => "bench";

    public IEnumerable<Command> Build(CliContext context)
    {
        var json = new Option<bool>("--json") { Description = "Print one JSON object {\"gemm\": [...]} on stdout" };
        var quick = new Option<bool>("--quick") { Description = "One short trial per shape (for smoke tests; figures are rough)" };
        var threads = new Option<int>("--threads")
        {
            Description = "Threads per GEMM (default: the shared pool's, K2RL_THREADS or the processor count)",
            DefaultValueFactory = _ => ForkJoinPool.Shared.Threads,
        };
        var openBlas = new Option<string?>("--openblas")
        {
            Description = "Also time OpenBLAS's cblas_sgemm from this shared library, interleaved with K2RL's trials " +
                "(e.g. /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0)",
        };
        var command = new Command("kernels", "GEMM GFLOP/s at the square and k2-nano shapes, nn/nt/tn, vs the scalar twin");
        command.Options.Add(json);
        command.Options.Add(quick);
        command.Options.Add(threads);
        command.Options.Add(openBlas);
        command.SetAction((ParseResult r, CancellationToken ct) =>
            RunAsync(new BenchKernelsOptions(r.GetValue(json), r.GetValue(quick), r.GetValue(threads), r.GetValue(openBlas)), context, ct));
        return [command];
    }

    public static async Task<int> RunAsync(BenchKernelsOptions options, CliContext context, CancellationToken ct)
    {
        if (options.Threads < 1)
        {
            await context.Error.WriteLineAsync($"error: --threads must be >= 1, got {options.Threads}");
            return 2;
        }

        OpenBlasReference? blas = null;
        if (options.OpenBlas is { } path)
        {
            try
            {
                blas = OpenBlasReference.Load(path, options.Threads);
            }
            catch (ArgumentException e)
            {
                await context.Error.WriteLineAsync($"error: --openblas: {e.Message}");
                return 2;
            }

            await context.Error.WriteLineAsync($"OpenBLAS core: {blas.CoreName}; config: {blas.Config}");
        }

        var ops = new[] { GemmOp.NN, GemmOp.NT, GemmOp.TN };
        var shapes = GemmShape.Standard;
        var results = new List<GemmTiming>();
        int total = shapes.Count * ops.Length, done = 0;
        foreach (var shape in shapes)
        {
            foreach (var op in ops)
            {
                ct.ThrowIfCancellationRequested();
                bool naive = shape.Flops <= (options.Quick ? QuickNaiveMaxFlops : NaiveMaxFlops);
                var timing = options.Quick
                    ? GemmBenchmark.Run(op, shape, options.Threads, trials: 1, trialSeconds: 0, naive, blas)
                    : GemmBenchmark.Run(op, shape, options.Threads, trials: 9, trialSeconds: 0.1, naive, blas);
                results.Add(timing);
                done++;
                await context.Error.WriteLineAsync(
                    $"[{done}/{total}] {Label(timing)}: {timing.GFlops:F1} GFLOP/s" +
                    (timing.OpenBlasGFlops is { } o ? $", OpenBLAS {o:F1} (median per-trial ratio {timing.MedianSpeedupOverOpenBlas:F2})" : "") +
                    (timing.NaiveGFlops is { } g ? $" (naive {g:F2})" : ""));
            }
        }

        if (options.Json)
        {
            await context.Out.WriteLineAsync(ToJson(results));
        }
        else
        {
            WriteTable(results, context.Out);
        }

        return 0;
    }

    private static string Label(GemmTiming t) =>
        $"{t.Op.ToString().ToLowerInvariant()} {t.Shape.M}x{t.Shape.N}x{t.Shape.K} ({t.Shape.Group})";

    public static string ToJson(IReadOnlyList<GemmTiming> results)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteStartArray("gemm");
            foreach (var t in results)
            {
                w.WriteStartObject();
                w.WriteString("op", t.Op.ToString().ToLowerInvariant());
                w.WriteNumber("m", t.Shape.M);
                w.WriteNumber("n", t.Shape.N);
                w.WriteNumber("k", t.Shape.K);
                w.WriteNumber("gflops", Math.Round(t.GFlops, 2));
                w.WriteNumber("ms", Math.Round(t.Seconds * 1e3, 4));
                if (t.NaiveGFlops is { } naive)
                {
                    w.WriteNumber("naive_gflops", Math.Round(naive, 3));
                }
                else
                {
                    w.WriteNull("naive_gflops");
                }

                if (t.OpenBlasGFlops is { } blasGflops)
                {
                    w.WriteNumber("openblas_gflops", Math.Round(blasGflops, 2));
                    w.WriteNumber("vs_openblas_median", Math.Round(t.MedianSpeedupOverOpenBlas ?? 0, 3));
                }

                w.WriteString("group", t.Shape.Group);
                w.WriteNumber("threads", t.Threads);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteTable(IReadOnlyList<GemmTiming> results, TextWriter output)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
        });
        console.Profile.Width = 160; // a redirected stdout reports 80 columns; rows must not wrap

        var table = new Table().AddColumns("group", "op", "m", "n", "k", "GFLOP/s", "ms", "OpenBLAS GFLOP/s", "naive GFLOP/s");
        foreach (var t in results)
        {
            table.AddRow(
                t.Shape.Group,
                t.Op.ToString().ToLowerInvariant(),
                t.Shape.M.ToString(CultureInfo.InvariantCulture),
                t.Shape.N.ToString(CultureInfo.InvariantCulture),
                t.Shape.K.ToString(CultureInfo.InvariantCulture),
                t.GFlops.ToString("F1", CultureInfo.InvariantCulture),
                (t.Seconds * 1e3).ToString("F3", CultureInfo.InvariantCulture),
                t.OpenBlasGFlops?.ToString("F1", CultureInfo.InvariantCulture) ?? "-",
                t.NaiveGFlops?.ToString("F2", CultureInfo.InvariantCulture) ?? "-");
        }

        console.Write(table);
    }
}
