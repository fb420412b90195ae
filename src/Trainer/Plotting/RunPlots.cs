using K2RL.Common;
using K2RL.Trainer.Pretraining;

namespace K2RL.Trainer.Plotting;

/// <summary>Draws a run's (or several runs') curves from metrics.jsonl: loss, max logit, expert balance, throughput.</summary>
public static class RunPlots
{
    /// <summary>
    /// Writes loss, max_logit, balance and throughput (.png and/or .svg, per <paramref name="format"/>) into
    /// <paramref name="outDir"/>; returns their paths.
    /// </summary>
    public static IReadOnlyList<string> Draw(IReadOnlyList<string> runDirs, string outDir, double? tau = null, int smooth = 1, PlotFormat format = PlotFormat.Both)
    {
        var runs = new List<(string Name, List<StepMetrics> Metrics)>();
        foreach (string dir in runDirs)
        {
            string path = Path.Combine(dir, "metrics.jsonl");
            if (!File.Exists(path))
            {
                throw new K2Exception($"{dir}: no metrics.jsonl (is it a run directory?)");
            }

            List<StepMetrics> metrics;
            try
            {
                metrics = StepMetrics.ReadAll(path);
            }
            catch (System.Text.Json.JsonException e)
            {
                throw new CorruptFileException(path, $"a line is not JSON: {e.Message}");
            }

            runs.Add((Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir))), metrics));
        }

        Directory.CreateDirectory(outDir);
        var files = new List<string>();
        void Chart(string figure, string title, string yLabel, Func<StepMetrics, double> value, bool smoothIt, (double, string)? reference = null, bool logY = false)
        {
            var chart = new LineChart { Title = title, YLabel = yLabel, LogY = logY };
            foreach (var (name, metrics) in runs)
            {
                var pts = metrics.Where(m => !m.Skipped).Select(m => ((double)m.Step, value(m))).ToList();
                chart.Series.Add(new Series(name, smoothIt ? Smooth(pts, smooth) : pts));
            }

            if (reference is { } r)
            {
                chart.ReferenceLines.Add(r);
            }

            files.AddRange(chart.Save(Path.Combine(outDir, figure), format));
        }

        string suffix = smooth > 1 ? $" (mean of {smooth} steps)" : "";
        // log scale: the first steps' loss (about ln V) is several times the rest, which a linear axis squashes
        Chart("loss", "Training loss" + suffix, "cross-entropy (nats/token, log scale)", m => m.Loss, true, logY: true);
        Chart("max_logit", "Max attention logit (over layers and heads, before QK-Clip)", "max pre-softmax logit (log scale)", m => m.MaxLogit, false,
            tau is { } t ? (t, $"tau = {t}") : null, logY: true);
        Chart("balance", "Expert load balance" + suffix, "max / mean expert load (worst MoE layer)", m => m.ExpertLoadMaxOverMean, true);
        Chart("throughput", "Throughput" + suffix, "tokens / s", m => m.TokensPerS, true);
        files.AddRange(HeldOutPlots.Draw(runDirs, outDir, format));   // SFT runs: held-out loss and accuracy
        return files;
    }

    private static List<(double X, double Y)> Smooth(List<(double X, double Y)> pts, int window)
    {
        if (window <= 1)
        {
            return pts;
        }

        var result = new List<(double, double)>(pts.Count);
        for (int i = 0; i < pts.Count; i++)
        {
            int from = Math.Max(0, i - window + 1);
            var w = pts.Skip(from).Take(i - from + 1).Select(p => p.Y).Where(double.IsFinite).ToList();
            result.Add((pts[i].X, w.Count > 0 ? w.Average() : double.NaN));
        }

        return result;
    }
}
