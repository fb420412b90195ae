using System.Globalization;
using System.Text.Json.Nodes;

namespace K2RL.Gym.Synthesis;

/// <summary>Counts of one environment's trajectories, and the rendered lengths (chars) of its kept records.</summary>
public sealed class SynthEnvCounts
{
    /// <summary>Where the env's trajectories came from (<c>expert</c>, <c>checkpoint:DIR</c>, <c>http:MODEL@URL</c>).</summary>
    public string? Source { get; set; }

    public int Judged { get; set; }

    public int Kept { get; set; }

    public int Rejected { get; set; }

    public int Duplicates { get; set; }

    public int MultiTurn { get; set; }

    public SortedDictionary<int, int> KeptByDifficulty { get; } = [];

    public List<int> Chars { get; } = [];

    /// <summary>Token lengths of the kept records (empty without a token counter).</summary>
    public List<int> Tokens { get; } = [];

    /// <summary>Tokens of each kept record's longest assistant turn (with its turn header and end token).</summary>
    public List<int> TurnTokens { get; } = [];
}

/// <summary>
/// What a synthesis run did (summary.json, and the CLI's one stdout object): trajectories judged, kept, rejected per
/// reason code, duplicates dropped, per environment; injected tool failures by kind (all, and in kept trajectories)
/// and recoveries; the share of kept agentic trajectories with a failure; lengths; elapsed time and throughput.
/// </summary>
public sealed class SynthSummary
{
    public const string Schema = "k2rl.synth.summary.v1";

    public string Source { get; set; } = "expert";

    public int Judged { get; set; }

    public int Kept { get; set; }

    public int Rejected { get; set; }

    public int Duplicates { get; set; }

    /// <summary>Judged trajectories with two or more assistant turns.</summary>
    public int MultiTurn { get; set; }

    public SortedDictionary<string, int> RejectedByReason { get; } = new(StringComparer.Ordinal);

    public SortedDictionary<string, SynthEnvCounts> ByEnv { get; } = new(StringComparer.Ordinal);

    public SortedDictionary<string, int> InjectedFailures { get; } = new(StringComparer.Ordinal);

    public SortedDictionary<string, int> InjectedFailuresKept { get; } = new(StringComparer.Ordinal);

    public int Recoveries { get; set; }

    /// <summary>Kept agentic trajectories, and how many of them carry an injected failure.</summary>
    public int KeptAgentic { get; set; }

    public int KeptWithFailure { get; set; }

    public TimeSpan Elapsed { get; set; }

    public int Workers { get; set; }

    public List<string> Files { get; } = [];

    public SynthEnvCounts Env(string name)
    {
        if (!ByEnv.TryGetValue(name, out var c))
        {
            ByEnv[name] = c = new SynthEnvCounts();
        }

        return c;
    }

    public JsonObject ToJson()
    {
        var envs = new JsonObject();
        foreach (var (name, c) in ByEnv)
        {
            envs[name] = new JsonObject
            {
                ["source"] = c.Source,
                ["judged"] = c.Judged, ["kept"] = c.Kept, ["rejected"] = c.Rejected, ["duplicates"] = c.Duplicates, ["multi_turn"] = c.MultiTurn,
                ["kept_by_difficulty"] = Map(c.KeptByDifficulty.ToDictionary(kv => kv.Key.ToString(CultureInfo.InvariantCulture), kv => kv.Value)),
                ["chars"] = Lengths(c.Chars),
            };
            if (c.Tokens.Count > 0)
            {
                envs[name]!["tokens"] = Lengths(c.Tokens);
                envs[name]!["longest_turn_tokens"] = Lengths(c.TurnTokens);
            }
        }

        double seconds = Elapsed.TotalSeconds;
        return new JsonObject
        {
            ["schema"] = Schema,
            ["source"] = Source,
            ["judged"] = Judged,
            ["kept"] = Kept,
            ["rejected"] = Rejected,
            ["duplicates"] = Duplicates,
            ["multi_turn"] = MultiTurn,
            ["rejected_by_reason"] = Map(RejectedByReason),
            ["by_env"] = envs,
            ["injected_failures"] = Map(InjectedFailures),
            ["injected_failures_kept"] = Map(InjectedFailuresKept),
            ["recoveries"] = Recoveries,
            ["kept_agentic"] = KeptAgentic,
            ["kept_agentic_with_failure"] = KeptWithFailure,
            ["failure_share_kept"] = KeptAgentic == 0 ? 0 : Math.Round((double)KeptWithFailure / KeptAgentic, 4),
            ["elapsed_s"] = Math.Round(seconds, 3),
            ["trajectories_per_s"] = seconds > 0 ? Math.Round(Judged / seconds, 1) : 0,
            ["workers"] = Workers,
            ["files"] = new JsonArray(Files.Select(f => (JsonNode?)JsonValue.Create(f)).ToArray()),
        };
    }

    private static JsonObject Map(IEnumerable<KeyValuePair<string, int>> counts)
    {
        var o = new JsonObject();
        foreach (var (k, v) in counts)
        {
            o[k] = v;
        }

        return o;
    }

    private static JsonObject Lengths(List<int> chars)
    {
        if (chars.Count == 0)
        {
            return new JsonObject { ["n"] = 0 };
        }

        var sorted = chars.Order().ToList();
        int At(double q) => sorted[Math.Min(sorted.Count - 1, (int)(q * sorted.Count))];
        return new JsonObject
        {
            ["n"] = sorted.Count, ["mean"] = Math.Round(sorted.Average(), 1), ["p50"] = At(0.5), ["p90"] = At(0.9), ["p99"] = At(0.99), ["max"] = sorted[^1],
        };
    }
}
