using System.Globalization;
using System.Text.Json.Nodes;

namespace K2RL.Gym.Critic.Workbench;

/// <summary>The workbench's result as one JSON object (<c>--json</c>) and as text for a terminal.</summary>
public static class WorkbenchReport
{
    /// <summary>Snake-case JSON; a statistic with nothing to count (NaN) is null.</summary>
    public static JsonObject ToJson(WorkbenchResult result) => new()
    {
        ["both_orders"] = result.Options.BothOrders,
        ["judges"] = new JsonArray(result.Judges.Select(SummaryJson).ToArray<JsonNode?>()),
        ["agreement"] = result.Agreement is { } a
            ? new JsonObject { ["compared"] = a.Compared, ["equal"] = a.Equal, ["excluded"] = a.Excluded, ["share"] = Num(a.Share), ["kappa"] = Num(a.Kappa) }
            : null,
        ["prompts"] = new JsonArray(result.Prompts.Select(PromptJson).ToArray<JsonNode?>()),
    };

    private static JsonObject SummaryJson(JudgeSummary s) => new()
    {
        ["judge"] = s.Judge,
        ["comparisons"] = s.Comparisons,
        ["unparseable"] = s.Unparseable,
        ["last_failure"] = s.Failure,
        ["position_bias"] = new JsonObject
        {
            ["pairs"] = s.Positions.Pairs, ["consistent"] = s.Positions.Consistent, ["agreement"] = Num(s.Positions.Agreement),
            ["decided"] = s.Positions.Decided, ["first_wins"] = s.Positions.FirstWins, ["first_share"] = Num(s.Positions.FirstShare),
        },
        ["critic_accuracy"] = s.Accuracy is { } c
            ? new JsonObject
            {
                ["pairs"] = c.Agreed + c.Disagreed, ["agreed"] = c.Agreed, ["no_verdict"] = c.NoVerdict, ["undecided"] = c.Undecided,
                ["accuracy"] = Num(c.Accuracy),
            }
            : null,
    };

    private static JsonObject PromptJson(PromptResult p) => new()
    {
        ["line"] = p.Item.Line,
        ["id"] = p.Item.Id,
        ["prompt"] = p.Item.Prompt,
        ["tags"] = Strings(p.Tags),
        ["rubrics"] = Strings(p.Rubrics.Select(r => r.Name)),
        ["responses"] = Strings(p.Item.Responses),
        ["rewards"] = p.Item.Rewards is { } r ? new JsonArray(r.Select(x => (JsonNode?)x).ToArray()) : null,
        ["disagreement"] = new JsonObject { ["judges"] = p.JudgesDisagree, ["orders"] = p.OrdersDisagree, ["verifier"] = p.VerifierDisagrees },
        ["judges"] = new JsonArray(p.Judges.Select(j => (JsonNode?)new JsonObject
        {
            ["judge"] = j.Judge,
            ["win_rate"] = Numbers(j.Scores.WinRate),
            ["bradley_terry"] = Numbers(j.Scores.BradleyTerry),
            ["strength"] = Numbers(j.Scores.Strength),
            ["unparseable"] = j.Scores.Unparseable,
            ["comparisons"] = new JsonArray(j.Comparisons.Select(c => (JsonNode?)new JsonObject
            {
                ["first"] = c.First, ["second"] = c.Second, ["verdict"] = VerdictName(c.Verdict), ["winner"] = c.Winner < 0 ? null : c.Winner,
                ["text"] = c.Text, ["problem"] = c.Problem,
            }).ToArray()),
        }).ToArray()),
    };

    /// <summary>Per prompt the verdicts and scores, then the overall statistics.</summary>
    public static void WriteText(WorkbenchResult result, TextWriter w)
    {
        foreach (var p in result.Prompts)
        {
            w.WriteLine($"== {p.Item.Id} (line {p.Item.Line}): {p.Item.Responses.Count} responses; tags [{string.Join(", ", p.Tags)}]; " +
                        $"rubrics {string.Join(", ", p.Rubrics.Select(r => r.Mandatory ? r.Name + "*" : r.Name))}");
            foreach (var j in p.Judges)
            {
                w.WriteLine($"  {j.Judge}:");
                foreach (var c in j.Comparisons)
                {
                    string what = c.Verdict switch
                    {
                        PairVerdict.Tie => "tie",
                        PairVerdict.Unparseable => $"unparseable ({c.Problem})",
                        _ => $"#{c.Winner + 1} wins",
                    };
                    w.WriteLine($"    #{c.First + 1} (A) vs #{c.Second + 1} (B): {what}{(c.Text is null ? "" : $" | {OneLine(c.Text, 100)}")}");
                }

                for (int i = 0; i < p.Item.Responses.Count; i++)
                {
                    string reward = p.Item.Rewards is { } r ? $"  verifier {F(r[i])}" : "";
                    w.WriteLine($"    #{i + 1}: win rate {F(j.Scores.WinRate[i])}  bradley-terry {F(j.Scores.BradleyTerry[i])}{reward}  | {OneLine(p.Item.Responses[i], 60)}");
                }

                w.WriteLine($"    unparseable {j.Scores.Unparseable} of {j.Scores.Comparisons}");
            }
        }

        WriteOverall(result, w);
    }

    private static void WriteOverall(WorkbenchResult result, TextWriter w)
    {
        w.WriteLine($"== overall: {result.Prompts.Count} prompts");
        foreach (var s in result.Judges)
        {
            w.WriteLine($"  {s.Judge}: {s.Comparisons} comparisons, {s.Unparseable} unparseable{(s.Failure is null ? "" : $" (last failure: {s.Failure})")}");
            w.WriteLine(result.Options.BothOrders
                ? $"    position bias: the same winner in both orders on {s.Positions.Consistent} of {s.Positions.Pairs} pairs ({Pct(s.Positions.Agreement)}); " +
                  $"A won {s.Positions.FirstWins} of {s.Positions.Decided} decided comparisons ({Pct(s.Positions.FirstShare)})"
                : $"    position bias: not measured (each pair asked in one order; --both-orders asks both); " +
                  $"A won {s.Positions.FirstWins} of {s.Positions.Decided} decided comparisons ({Pct(s.Positions.FirstShare)})");
            w.WriteLine(s.Accuracy is { } c
                ? $"    critic accuracy against the verifier rewards: {c.Agreed} of {c.Agreed + c.Disagreed} pairs ({Pct(c.Accuracy)}); " +
                  $"{c.NoVerdict} of the misses were ties or unparseable; {c.Undecided} pairs the verifier scored equal"
                : "    critic accuracy: no verifier rewards in the input");
        }

        if (result.Agreement is { } a)
        {
            w.WriteLine($"  agreement between the judges: {a.Equal} of {a.Compared} comparisons equal ({Pct(a.Share)}), Cohen's kappa {F(a.Kappa)}; " +
                        $"{a.Excluded} left out (a judge had no verdict)");
        }
    }

    internal static string VerdictName(PairVerdict v) => v switch
    {
        PairVerdict.A => "A",
        PairVerdict.B => "B",
        PairVerdict.Tie => "tie",
        _ => "unparseable",
    };

    internal static string F(double x) => double.IsNaN(x) ? "n/a" : x.ToString("0.###", CultureInfo.InvariantCulture);

    internal static string Pct(double x) => double.IsNaN(x) ? "n/a" : (100 * x).ToString("0.#", CultureInfo.InvariantCulture) + " %";

    private static string OneLine(string text, int max)
    {
        string s = string.Join(' ', text.Split((char[])['\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries)).Trim();
        return s.Length <= max ? s : s[..max] + "…";
    }

    private static JsonNode? Num(double x) => double.IsFinite(x) ? JsonValue.Create(x) : null;

    private static JsonArray Numbers(IEnumerable<double> xs) => new(xs.Select(Num).ToArray());

    private static JsonArray Strings(IEnumerable<string> xs) => new(xs.Select(x => (JsonNode?)x).ToArray());
}
