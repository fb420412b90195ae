using System.Globalization;
using System.Text;

namespace K2RL.Trainer.Plotting;

/// <summary>One line of a chart.</summary>
public sealed record Series(string Name, IReadOnlyList<(double X, double Y)> Points);

/// <summary>
/// A line chart as a self-contained SVG: axes with round-number ticks, grid, one polyline per series, a legend,
/// and optional horizontal reference lines (e.g. tau). Non-finite points are left out.
/// </summary>
public sealed class SvgChart
{
    private static readonly string[] Colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

    public required string Title { get; init; }

    public string XLabel { get; init; } = "step";

    public required string YLabel { get; init; }

    public List<Series> Series { get; } = [];

    public List<(double Y, string Label)> ReferenceLines { get; } = [];

    /// <summary>
    /// Log10 y axis (for quantities spanning decades, like the max logit without QK-Clip, or a loss whose first steps
    /// would squash the rest on a linear axis); y ≤ 0 is left out; ticks from <see cref="LogTicks"/>.
    /// </summary>
    public bool LogY { get; init; }

    public int Width { get; init; } = 760;

    public int Height { get; init; } = 400;

    public string Render()
    {
        const int left = 78, right = 24, top = 44, bottom = 56;
        int pw = Width - left - right, ph = Height - top - bottom;
        var pts = Series.SelectMany(s => s.Points).Where(Good).Select(Map).ToList();
        double x0 = pts.Count > 0 ? pts.Min(p => p.X) : 0, x1 = pts.Count > 0 ? pts.Max(p => p.X) : 1;
        double y0 = pts.Count > 0 ? pts.Min(p => p.Y) : 0, y1 = pts.Count > 0 ? pts.Max(p => p.Y) : 1;
        foreach (var (y, _) in ReferenceLines.Where(r => !LogY || r.Y > 0))
        {
            y0 = Math.Min(y0, Ty(y));
            y1 = Math.Max(y1, Ty(y));
        }

        if (x1 <= x0)
        {
            x1 = x0 + 1;
        }

        if (y1 <= y0)
        {
            y1 = y0 + 1;
        }

        var yTicks = LogY ? LogTicks(y0, y1) : Ticks(y0, y1, 6);
        var xTicks = Ticks(x0, x1, 8);
        y0 = Math.Min(y0, yTicks[0]);
        y1 = Math.Max(y1, yTicks[^1]);
        double X(double x) => left + (x - x0) / (x1 - x0) * pw;
        double Y(double y) => top + ph - (y - y0) / (y1 - y0) * ph;

        var sb = new StringBuilder();
        sb.Append($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        sb.Append($"<rect width=\"{Width}\" height=\"{Height}\" fill=\"white\"/>\n");
        sb.Append($"<text x=\"{Width / 2}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">{Esc(Title)}</text>\n");
        foreach (double t in yTicks)
        {
            sb.Append($"<line x1=\"{left}\" x2=\"{left + pw}\" y1=\"{F(Y(t))}\" y2=\"{F(Y(t))}\" stroke=\"#e5e5e5\"/>\n");
            sb.Append($"<text x=\"{left - 6}\" y=\"{F(Y(t) + 4)}\" text-anchor=\"end\">{Esc(Label(LogY ? Math.Pow(10, t) : t))}</text>\n");
        }

        foreach (double t in xTicks.Where(t => t >= x0 && t <= x1))
        {
            sb.Append($"<line x1=\"{F(X(t))}\" x2=\"{F(X(t))}\" y1=\"{top}\" y2=\"{top + ph}\" stroke=\"#f0f0f0\"/>\n");
            sb.Append($"<text x=\"{F(X(t))}\" y=\"{top + ph + 18}\" text-anchor=\"middle\">{Esc(Label(t))}</text>\n");
        }

        sb.Append($"<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n");
        sb.Append($"<text x=\"{left + pw / 2}\" y=\"{Height - 12}\" text-anchor=\"middle\">{Esc(XLabel)}</text>\n");
        sb.Append($"<text transform=\"translate(18 {top + ph / 2}) rotate(-90)\" text-anchor=\"middle\">{Esc(YLabel)}</text>\n");
        foreach (var (ry, label) in ReferenceLines.Where(r => !LogY || r.Y > 0))
        {
            double y = Ty(ry);
            sb.Append($"<line x1=\"{left}\" x2=\"{left + pw}\" y1=\"{F(Y(y))}\" y2=\"{F(Y(y))}\" stroke=\"#555\" stroke-dasharray=\"6 4\"/>\n");
            sb.Append($"<text x=\"{left + pw - 4}\" y=\"{F(Y(y) - 5)}\" text-anchor=\"end\" fill=\"#555\">{Esc(label)}</text>\n");
        }

        for (int i = 0; i < Series.Count; i++)
        {
            string color = Colors[i % Colors.Length];
            var good = Series[i].Points.Where(Good).Select(Map).ToList();
            if (good.Count == 0)
            {
                continue;
            }

            string path = string.Join(' ', good.Select(p => $"{F(X(p.X))},{F(Y(p.Y))}"));
            sb.Append($"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\" points=\"{path}\"/>\n");
            int ly = top + 16 + i * 18;
            sb.Append($"<line x1=\"{left + 12}\" x2=\"{left + 36}\" y1=\"{ly - 4}\" y2=\"{ly - 4}\" stroke=\"{color}\" stroke-width=\"3\"/>\n");
            sb.Append($"<text x=\"{left + 42}\" y=\"{ly}\">{Esc(Series[i].Name)}</text>\n");
        }

        sb.Append("</svg>\n");
        return sb.ToString();
    }

    private bool Good((double X, double Y) p) => double.IsFinite(p.X) && double.IsFinite(p.Y) && (!LogY || p.Y > 0);

    private (double X, double Y) Map((double X, double Y) p) => (p.X, Ty(p.Y));

    private double Ty(double y) => LogY ? Math.Log10(y) : y;

    /// <summary>Round-number ticks (1, 2, 5 × 10^k) covering [lo, hi].</summary>
    public static double[] Ticks(double lo, double hi, int target)
    {
        double raw = (hi - lo) / Math.Max(1, target);
        double mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1.0, 2.0, 5.0, 10.0 }.Select(m => m * mag).First(s => s >= raw);
        double start = Math.Floor(lo / step) * step;
        var ticks = new List<double>();
        for (double t = start; t <= hi + step * 0.5 && ticks.Count < 50; t += step)
        {
            ticks.Add(Math.Round(t / step) * step);
        }

        return ticks.ToArray();
    }

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

    private static string Label(double v)
    {
        double a = Math.Abs(v);
        return a >= 1e5 ? v.ToString("0.##e0", CultureInfo.InvariantCulture)
            : a >= 100 || a == 0 ? v.ToString("0.#", CultureInfo.InvariantCulture)
            : v.ToString("0.###", CultureInfo.InvariantCulture);
    }

    private static string F(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);

    private static string Esc(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;");
}
