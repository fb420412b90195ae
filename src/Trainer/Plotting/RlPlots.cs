using System.Text.Json.Nodes;
using K2RL.Common;

namespace K2RL.Trainer.Plotting;

/// <summary>Draws an RL run's curves from its metrics.jsonl: reward, accuracy (train and held-out), response length, temperature, timing.</summary>
public static class RlPlots
{
    /// <summary>Whether a run directory's metrics are an RL run's (lines keyed by iteration).</summary>
    public static bool IsRlRun(string runDir)
    {
        string path = Path.Combine(runDir, "metrics.jsonl");
        string? first = File.Exists(path) ? File.ReadLines(path).FirstOrDefault(l => l.Trim().Length > 0) : null;
        return first is not null && first.Contains("\"iteration\"", StringComparison.Ordinal);
    }

    /// <summary>
    /// Writes reward, accuracy, length, temperature and timing (.png and/or .svg, per <paramref name="format"/>) into
    /// <paramref name="outDir"/> (default RUN_DIR/plots); returns their paths.
    /// </summary>
    public static IReadOnlyList<string> Draw(string runDir, string? outDir = null, PlotFormat format = PlotFormat.Both)
    {
        outDir ??= Path.Combine(runDir, "plots");
        string path = Path.Combine(runDir, "metrics.jsonl");
        if (!File.Exists(path))
        {
            throw new K2Exception($"{runDir}: no metrics.jsonl (is it a run directory?)");
        }

        var rows = new List<JsonNode>();
        int lineNo = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNo++;
            if (line.Trim().Length == 0)
            {
                continue;
            }

            try
            {
                rows.Add(JsonNode.Parse(line) ?? throw new System.Text.Json.JsonException("null"));
            }
            catch (System.Text.Json.JsonException e)
            {
                throw new CorruptFileException(path, $"line {lineNo} is not JSON: {e.Message}");
            }
        }

        Directory.CreateDirectory(outDir);
        var files = new List<string>();
        var envs = rows.SelectMany(r => (r["envs"] as JsonObject)?.Select(kv => kv.Key) ?? []).Distinct().Order(StringComparer.Ordinal).ToList();
        var heldOut = rows.SelectMany(r => (r["held_out"] as JsonObject)?.Select(kv => kv.Key) ?? []).Distinct().Order(StringComparer.Ordinal).ToList();

        void Chart(string figure, string title, string yLabel, IEnumerable<(string Name, Func<JsonNode, double?> Value)> series)
        {
            var chart = new LineChart { Title = title, YLabel = yLabel, XLabel = "iteration" };
            foreach (var (name, value) in series)
            {
                var pts = rows.Select(r => (X: (double)(r["iteration"]?.GetValue<long>() ?? 0), Y: value(r)))
                    .Where(p => p.Y is { } y && double.IsFinite(y)).Select(p => (p.X, p.Y!.Value)).ToList();
                if (pts.Count > 0)
                {
                    // sparse series (held-out accuracy, measured every eval.every iterations) get a marker per point
                    chart.Series.Add(new Series(name, pts) { Markers = pts.Count * 2 <= rows.Count });
                }
            }

            files.AddRange(chart.Save(Path.Combine(outDir, figure), format));
        }

        Chart("reward", "Mean reward per env (after budget control)", "reward", envs.Select(e => (e, (Func<JsonNode, double?>)(r => Num(r["envs"]?[e]?["reward_mean"])))));
        Chart("accuracy", "Accuracy: training samples per env, and held-out (greedy)", "accuracy",
            envs.Select(e => ($"{e} (train)", (Func<JsonNode, double?>)(r => Num(r["envs"]?[e]?["accuracy"]))))
                .Concat(heldOut.Select(h => ($"{h} (held-out)", (Func<JsonNode, double?>)(r => Num(r["held_out"]?[h]))))));
        Chart("length", "Response length per env", "tokens (mean)", envs.Select(e => (e, (Func<JsonNode, double?>)(r => Num(r["envs"]?[e]?["response_tokens_mean"])))));
        Chart("temperature", "Sampling temperature", "temperature", [("temperature", r => Num(r["temperature"]))]);
        Chart("timing", "Time per iteration by phase", "seconds",
            new[] { "generate_s", "score_s", "train_s", "push_s", "other_s" }.Select(k => (k, (Func<JsonNode, double?>)(r => Num(r[k])))));
        return files;
    }

    internal static double? Num(JsonNode? n) => n is JsonValue v && v.TryGetValue(out double d) ? d : null;
}
