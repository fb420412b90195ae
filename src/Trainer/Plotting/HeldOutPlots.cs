using System.Text.Json.Nodes;

namespace K2RL.Trainer.Plotting;

/// <summary>
/// The held-out curves of step-keyed runs whose metrics.jsonl lines carry them (an SFT run: <c>held_out_loss</c> and
/// the greedy accuracy per env and difficulty in <c>held_out</c>); runs without them add nothing.
/// </summary>
public static class HeldOutPlots
{
    /// <summary>Writes held_out_loss and held_out_accuracy into <paramref name="outDir"/> when any run has them; returns their paths.</summary>
    public static IReadOnlyList<string> Draw(IReadOnlyList<string> runDirs, string outDir, PlotFormat format)
    {
        var runs = runDirs.Select(d => (Name: Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(d))), Rows: Rows(d))).ToList();
        var files = new List<string>();
        bool multi = runs.Count > 1;
        var loss = new LineChart { Title = "Held-out SFT loss (assistant tokens)", YLabel = "cross-entropy (nats/token)" };
        var accuracy = new LineChart { Title = "Held-out accuracy (greedy)", YLabel = "accuracy" };
        foreach (var (name, rows) in runs)
        {
            var l = Points(rows, r => r["held_out_loss"]);
            if (l.Count > 0)
            {
                loss.Series.Add(new Series(name, l) { Markers = true });
            }

            var keys = rows.SelectMany(r => (r["held_out"] as JsonObject)?.Select(kv => kv.Key) ?? []).Distinct().Order(StringComparer.Ordinal);
            foreach (string key in keys)
            {
                accuracy.Series.Add(new Series(multi ? $"{name} {key}" : key, Points(rows, r => r["held_out"]?[key])) { Markers = true });
            }
        }

        if (loss.Series.Count > 0)
        {
            files.AddRange(loss.Save(Path.Combine(outDir, "held_out_loss"), format));
        }

        if (accuracy.Series.Count > 0)
        {
            files.AddRange(accuracy.Save(Path.Combine(outDir, "held_out_accuracy"), format));
        }

        return files;
    }

    private static List<JsonNode> Rows(string runDir) =>
        File.ReadLines(Path.Combine(runDir, "metrics.jsonl")).Where(l => l.Trim().Length > 0).Select(l => JsonNode.Parse(l)!).ToList();

    private static List<(double X, double Y)> Points(List<JsonNode> rows, Func<JsonNode, JsonNode?> value) =>
        rows.Select(r => (X: RlPlots.Num(r["step"]), Y: RlPlots.Num(value(r)))).Where(p => p.X is not null && p.Y is { } y && double.IsFinite(y))
            .Select(p => (p.X!.Value, p.Y!.Value)).ToList();
}
