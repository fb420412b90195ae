using ScottPlot;

namespace K2RL.Trainer.Plotting;

/// <summary>One line of a chart; <see cref="Markers"/> marks each point (for sparse series, like held-out evaluations).</summary>
public sealed record Series(string Name, IReadOnlyList<(double X, double Y)> Points)
{
    public bool Markers { get; init; }
}

/// <summary>Which files <c>k2rl plot</c> writes for each figure.</summary>
public enum PlotFormat
{
    /// <summary>NAME.png and NAME.svg.</summary>
    Both,

    /// <summary>NAME.png only.</summary>
    Png,

    /// <summary>NAME.svg only.</summary>
    Svg,
}

/// <summary>
/// A line chart drawn with ScottPlot (SkiaSharp, headless): title, axis labels, one line per series, a legend right of
/// the data, optional dashed horizontal reference lines (e.g. tau). Non-finite points are left out, and so is a series
/// with none left.
/// </summary>
public sealed class LineChart
{
    public required string Title { get; init; }

    public string XLabel { get; init; } = "step";

    public required string YLabel { get; init; }

    public List<Series> Series { get; } = [];

    public List<(double Y, string Label)> ReferenceLines { get; } = [];

    /// <summary>
    /// Log10 y axis (for quantities spanning decades, like the max logit without QK-Clip, or a loss whose first steps
    /// would squash the rest on a linear axis): y ≤ 0 is left out, the lines are drawn at log10(y), and the ticks, from
    /// <see cref="LogTicks"/>, are labelled with y itself. Otherwise ScottPlot ranges the axis to the data.
    /// </summary>
    public bool LogY { get; init; }

    public int Width { get; init; } = 800;

    public int Height { get; init; } = 450;

    /// <summary>
    /// Whether SkiaSharp finds any font. Its Linux build without dependencies reads fonts from /usr/share/fonts only
    /// (no fontconfig); with none there, the figures (PNG and SVG) are drawn without any text.
    /// </summary>
    public static bool HasFonts => SkiaSharp.SKFontManager.Default.FontFamilies.Any(f => f.Length > 0);

    /// <summary>
    /// The font of every text: the first sans-serif family installed (ScottPlot's own pick, <see cref="Fonts.Sans"/>,
    /// finds DejaVu Serif first on Debian's fonts-dejavu), else ScottPlot's default.
    /// </summary>
    private static readonly string Font = new[] { "DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial", "Helvetica" }
        .FirstOrDefault(SkiaSharp.SKFontManager.Default.FontFamilies.Contains) ?? Fonts.Default;

    /// <summary>Writes <paramref name="pathWithoutExtension"/>.png and/or .svg; returns the paths written.</summary>
    public IReadOnlyList<string> Save(string pathWithoutExtension, PlotFormat format)
    {
        Plot plot = Build();
        var files = new List<string>();
        if (format is PlotFormat.Both or PlotFormat.Png)
        {
            files.Add(pathWithoutExtension + ".png");
            plot.SavePng(files[^1], Width, Height);
        }

        if (format is PlotFormat.Both or PlotFormat.Svg)
        {
            files.Add(pathWithoutExtension + ".svg");
            plot.SaveSvg(files[^1], Width, Height);
        }

        return files;
    }

    private Plot Build()
    {
        var plot = new Plot();
        plot.Font.Set(Font);
        plot.Title(Title);
        plot.XLabel(XLabel);
        plot.YLabel(YLabel);
        var drawn = Series.Select(s => (Series: s, Points: s.Points.Where(Good).Select(p => (p.X, Y: Ty(p.Y))).ToList()))
            .Where(s => s.Points.Count > 0).ToList();
        foreach (var (series, points) in drawn)
        {
            var line = plot.Add.ScatterLine(points.Select(p => p.X).ToArray(), points.Select(p => p.Y).ToArray());
            line.LegendText = series.Name;
            line.LineWidth = 1.6f;
            line.MarkerSize = series.Markers ? 6 : 0;
        }

        var references = ReferenceLines.Where(r => double.IsFinite(r.Y) && (!LogY || r.Y > 0)).ToList();
        foreach (var (y, label) in references)
        {
            var line = plot.Add.HorizontalLine(Ty(y), 1.2f, Colors.DimGray, LinePattern.Dashed);
            line.LegendText = label;
        }

        if (LogY)
        {
            var ys = drawn.SelectMany(s => s.Points.Select(p => p.Y)).Concat(references.Select(r => Ty(r.Y))).ToList();
            double lo = ys.Count > 0 ? ys.Min() : 0, hi = ys.Count > 0 ? ys.Max() : 1;
            if (hi <= lo)
            {
                (lo, hi) = (lo - 0.5, hi + 0.5);
            }

            double[] ticks = LogTicks(lo, hi);
            plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks, ticks.Select(t => Label(Math.Pow(10, t))).ToArray());
            plot.Axes.AutoScaleX();
            plot.Axes.SetLimitsY(ticks[0], ticks[^1]);
        }

        if (drawn.Count + references.Count > 0)
        {
            plot.ShowLegend(Edge.Right);
        }

        return plot;
    }

    private bool Good((double X, double Y) p) => double.IsFinite(p.X) && double.IsFinite(p.Y) && (!LogY || p.Y > 0);

    private double Ty(double y) => LogY ? Math.Log10(y) : y;

    /// <summary>
    /// Ticks for a log10 axis over [lo, hi] (both log10 values), returned as log10 values: decades when at least three
    /// fall inside, else 1-2-5 steps, else 1..9 steps within a decade; the first tick is the nearest one at or below lo
    /// and the last the nearest at or above hi, so the axis ends just outside the data instead of at whole decades.
    /// </summary>
    public static double[] LogTicks(double lo, double hi)
    {
        double[][] mantissas = [[1], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]];
        const double eps = 1e-9;
        double[] ticks = [];
        foreach (double[] m in mantissas)
        {
            var all = Enumerable.Range((int)Math.Floor(lo) - 1, (int)Math.Ceiling(hi) - (int)Math.Floor(lo) + 3)
                .SelectMany(k => m.Select(v => k + Math.Log10(v))).ToList();
            int first = all.FindLastIndex(t => t <= lo + eps), last = all.FindIndex(t => t >= hi - eps);
            ticks = all.GetRange(first, last - first + 1).ToArray();
            if (ticks.Count(t => t >= lo - eps && t <= hi + eps) >= 3)
            {
                break;
            }
        }

        return ticks;
    }

    /// <summary>A tick label: 3 significant decimals under 100, one above, exponent form from 10^5.</summary>
    public static string Label(double v)
    {
        double a = Math.Abs(v);
        return a >= 1e5 ? v.ToString("0.##e0", System.Globalization.CultureInfo.InvariantCulture)
            : a >= 100 || a == 0 ? v.ToString("0.#", System.Globalization.CultureInfo.InvariantCulture)
            : v.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture);
    }
}
