using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace K2RL.Gym.Critic;

/// <summary>A judge's decision on one comparison. Persisted by number: never renumber.</summary>
public enum PairVerdict
{
    /// <summary>The response shown first (A) is better.</summary>
    A = 0,

    /// <summary>The response shown second (B) is better.</summary>
    B = 1,

    Tie = 2,

    /// <summary>No verdict could be read (or the judge failed). Counted, left out of the scores.</summary>
    Unparseable = 3,
}

/// <summary>One comparison: response <see cref="First"/> shown as A, <see cref="Second"/> as B.</summary>
public sealed record PairwiseComparison(int First, int Second, string Prompt);

/// <summary>A comparison and what the judge said.</summary>
public sealed record PairOutcome(PairwiseComparison Comparison, string? Raw, PairVerdict Verdict)
{
    /// <summary>The index of the winning response, or -1 for a tie or no verdict.</summary>
    public int Winner => Verdict switch
    {
        PairVerdict.A => Comparison.First,
        PairVerdict.B => Comparison.Second,
        _ => -1,
    };
}

/// <summary>How pairwise outcomes become scalar rewards.</summary>
public enum CriticRewardMode
{
    /// <summary>Wins (ties half) over comparisons with a verdict.</summary>
    WinRate = 0,

    /// <summary>Expected win probability against the others under a Bradley–Terry fit.</summary>
    BradleyTerry = 1,
}

/// <summary>The scores of K responses to one prompt.</summary>
public sealed record CriticScores(
    IReadOnlyList<double> WinRate,
    IReadOnlyList<double> BradleyTerry,
    IReadOnlyList<double> Strength,
    IReadOnlyList<PairOutcome> Outcomes)
{
    public int Comparisons => Outcomes.Count;

    public int Unparseable => Outcomes.Count(o => o.Verdict == PairVerdict.Unparseable);

    public IReadOnlyList<double> Rewards(CriticRewardMode mode) => mode == CriticRewardMode.WinRate ? WinRate : BradleyTerry;
}

public sealed record CriticOptions
{
    /// <summary>Ask each pair in both orders (A/B swapped) to cancel position bias.</summary>
    public bool BothOrders { get; init; } = true;

    /// <summary>Longest response text put in a prompt; longer ones are cut with a note.</summary>
    public int MaxResponseChars { get; init; } = 6000;

    /// <summary>Pseudo-games (half won by each side) added to every pair in the Bradley–Terry fit, so that a response
    /// that won or lost everything still has a finite strength.</summary>
    public double BradleyTerryPrior { get; init; } = 0.5;

    public int BradleyTerryIterations { get; init; } = 200;

    /// <summary>How much of each rubric the prompt carries: its criteria too (the default), or its name and description
    /// only, for a judge whose context does not hold the full text (a small model).</summary>
    public RubricDetail RubricDetail { get; init; } = RubricDetail.Full;
}

/// <summary>How much of a rubric a comparison prompt carries.</summary>
public enum RubricDetail
{
    /// <summary>Name, description and every criterion.</summary>
    Full,

    /// <summary>Name and description.</summary>
    Brief,
}

/// <summary>
/// The self-critique rubric reward (SPEC §3): for K responses to a prompt, build the pairwise comparison prompts with
/// the applicable rubrics, ask an <see cref="IJudge"/>, parse the verdicts, and turn them into rewards by win rate and
/// by Bradley–Terry.
/// </summary>
public sealed class CriticProtocol(IJudge judge, IReadOnlyList<Rubric> rubrics, CriticOptions? options = null)
{
    private const string ResponseAHeader = "## Response A\n";
    private const string ResponseBHeader = "## Response B\n";
    private const string RubricsHeader = "## Rubrics\n";

    public CriticOptions Options { get; } = options ?? new CriticOptions();

    public IJudge Judge => judge;

    /// <summary>The rubrics that apply to a prompt with these tags: all core and prescriptive ones, and matching task-specific ones.</summary>
    public IReadOnlyList<Rubric> RubricsFor(IReadOnlyCollection<string> tags) => rubrics.Where(r => r.AppliesToTags(tags)).ToList();

    /// <summary>Every pair (i &lt; j), and the swapped order too when <see cref="CriticOptions.BothOrders"/>.</summary>
    public IReadOnlyList<PairwiseComparison> BuildComparisons(string prompt, IReadOnlyList<string> responses,
        IReadOnlyCollection<string>? tags = null)
    {
        var applicable = RubricsFor(tags ?? []);
        var list = new List<PairwiseComparison>();
        for (int i = 0; i < responses.Count; i++)
        {
            for (int j = i + 1; j < responses.Count; j++)
            {
                list.Add(new PairwiseComparison(i, j, BuildPrompt(prompt, responses[i], responses[j], applicable)));
                if (Options.BothOrders)
                {
                    list.Add(new PairwiseComparison(j, i, BuildPrompt(prompt, responses[j], responses[i], applicable)));
                }
            }
        }

        return list;
    }

    public async Task<CriticScores> ScoreAsync(string prompt, IReadOnlyList<string> responses,
        IReadOnlyCollection<string>? tags = null, CancellationToken ct = default)
    {
        var comparisons = BuildComparisons(prompt, responses, tags);
        var raw = comparisons.Count == 0 ? [] : await judge.JudgeAsync(comparisons.Select(c => c.Prompt).ToList(), ct);
        var outcomes = comparisons.Select((c, i) =>
        {
            string? text = i < raw.Count ? raw[i] : null;
            return new PairOutcome(c, text, VerdictParser.Parse(text));
        }).ToList();
        return Score(responses.Count, outcomes, Options);
    }

    /// <summary>Win rates and a Bradley–Terry fit (minorization–maximization, Hunter 2004) from outcomes.</summary>
    public static CriticScores Score(int k, IReadOnlyList<PairOutcome> outcomes, CriticOptions? options = null)
    {
        options ??= new CriticOptions();
        var wins = new double[k];
        var games = new double[k, k];
        foreach (var o in outcomes)
        {
            int a = o.Comparison.First, b = o.Comparison.Second;
            switch (o.Verdict)
            {
                case PairVerdict.A:
                    wins[a] += 1;
                    break;
                case PairVerdict.B:
                    wins[b] += 1;
                    break;
                case PairVerdict.Tie:
                    wins[a] += 0.5;
                    wins[b] += 0.5;
                    break;
                default:
                    continue;
            }

            games[a, b] += 1;
            games[b, a] += 1;
        }

        var winRate = new double[k];
        for (int i = 0; i < k; i++)
        {
            double n = 0;
            for (int j = 0; j < k; j++)
            {
                n += games[i, j];
            }

            winRate[i] = n > 0 ? wins[i] / n : 0.5;
        }

        var p = BradleyTerryFit(wins, games, options.BradleyTerryPrior, options.BradleyTerryIterations);
        var expected = new double[k];
        var strength = new double[k];
        double meanLog = k > 0 ? p.Average(Math.Log) : 0;
        for (int i = 0; i < k; i++)
        {
            strength[i] = Math.Log(p[i]) - meanLog;
            double s = 0;
            for (int j = 0; j < k; j++)
            {
                if (j != i)
                {
                    s += p[i] / (p[i] + p[j]);
                }
            }

            expected[i] = k > 1 ? s / (k - 1) : 0.5;
        }

        return new CriticScores(winRate, expected, strength, outcomes);
    }

    /// <summary>
    /// Bradley–Terry strengths p (geometric mean 1) maximizing Π p_i/(p_i+p_j) over the games, with
    /// <paramref name="prior"/> pseudo-games per pair split evenly. MM update: p_i ← W_i / Σ_j n_ij/(p_i+p_j).
    /// </summary>
    public static double[] BradleyTerryFit(IReadOnlyList<double> wins, double[,] games, double prior, int iterations)
    {
        int k = wins.Count;
        var p = Enumerable.Repeat(1.0, k).ToArray();
        var next = new double[k];
        for (int it = 0; it < iterations; it++)
        {
            double maxChange = 0;
            for (int i = 0; i < k; i++)
            {
                double w = wins[i] + prior * (k - 1) / 2;
                double denom = 0;
                for (int j = 0; j < k; j++)
                {
                    if (j != i)
                    {
                        denom += (games[i, j] + prior) / (p[i] + p[j]);
                    }
                }

                next[i] = denom > 0 ? w / denom : p[i];
            }

            double logMean = next.Average(Math.Log);
            double scale = Math.Exp(-logMean);
            for (int i = 0; i < k; i++)
            {
                double v = next[i] * scale;
                maxChange = Math.Max(maxChange, Math.Abs(v - p[i]));
                p[i] = v;
            }

            if (maxChange < 1e-10)
            {
                break;
            }
        }

        return p;
    }

    /// <summary>The comparison prompt for responses A and B under the given rubrics.</summary>
    public string BuildPrompt(string prompt, string a, string b, IReadOnlyList<Rubric> applicable)
    {
        var sb = new StringBuilder();
        sb.Append("You compare two responses to the same prompt against the rubrics below.\n\n");
        sb.Append("## Prompt\n").Append(prompt.Trim()).Append("\n\n");
        sb.Append(ResponseAHeader).Append(Clip(a)).Append("\n\n");
        sb.Append(ResponseBHeader).Append(Clip(b)).Append("\n\n");
        sb.Append(RubricsHeader);
        var mandatory = applicable.Where(r => r.Mandatory).ToList();
        if (mandatory.Count > 0)
        {
            sb.Append("Mandatory (a response that violates one of these loses, unless both do):\n");
            AppendRubrics(sb, mandatory);
        }

        var other = applicable.Where(r => !r.Mandatory).ToList();
        if (other.Count > 0)
        {
            sb.Append(mandatory.Count > 0 ? "Also weigh:\n" : "Weigh:\n");
            AppendRubrics(sb, other);
        }

        sb.Append("\nThink briefly, then end with exactly one line: 'Verdict: [[A]]', 'Verdict: [[B]]' or 'Verdict: [[TIE]]'.\n");
        return sb.ToString();
    }

    /// <summary>Recovers the two response texts from a comparison prompt (for scripted judges and tests).</summary>
    public static (string A, string B) ResponsesOf(string comparisonPrompt)
    {
        int a = comparisonPrompt.IndexOf(ResponseAHeader, StringComparison.Ordinal);
        int b = comparisonPrompt.IndexOf(ResponseBHeader, a + 1, StringComparison.Ordinal);
        int r = comparisonPrompt.IndexOf("\n\n" + RubricsHeader, b + 1, StringComparison.Ordinal);
        if (a < 0 || b < 0 || r < 0)
        {
            return ("", "");
        }

        return (comparisonPrompt[(a + ResponseAHeader.Length)..(b - 2)], comparisonPrompt[(b + ResponseBHeader.Length)..r]);
    }

    private void AppendRubrics(StringBuilder sb, IEnumerable<Rubric> list)
    {
        foreach (var r in list)
        {
            sb.Append("- ").Append(r.Name).Append(": ").Append(r.Description.Trim()).Append('\n');
            foreach (string c in Options.RubricDetail == RubricDetail.Full ? r.Criteria : [])
            {
                sb.Append("  - ").Append(c.Trim()).Append('\n');
            }
        }
    }

    private string Clip(string text) =>
        text.Length <= Options.MaxResponseChars ? text : text[..Options.MaxResponseChars] + "\n[... cut]";
}

/// <summary>
/// Reads a verdict from a judge's free text. Prefers the last line holding a <c>[[A]]</c>/<c>[[B]]</c>/<c>[[TIE]]</c>
/// marker (a line with two different markers is an echo of the instructions: unparseable), then a
/// <c>Verdict: A</c>/<c>Winner: B</c>/<c>tie</c> line, then a single "Response A is better" phrase. Anything else is
/// <see cref="PairVerdict.Unparseable"/>; it never throws.
/// </summary>
public static partial class VerdictParser
{
    [GeneratedRegex(@"\[\[\s*(A|B|TIE)\s*\]\]", RegexOptions.IgnoreCase)]
    private static partial Regex Marker();

    [GeneratedRegex(@"\b(?:verdict|winner|decision|better\s+response)\s*[:=\-]\s*\**\s*(?:response\s+)?(A|B|tie|draw)\b",
        RegexOptions.IgnoreCase)]
    private static partial Regex Labeled();

    [GeneratedRegex(@"\b(?:response|answer|assistant)\s+(A|B)\s+(?:is\s+(?:clearly\s+)?better|wins|is\s+preferred)",
        RegexOptions.IgnoreCase)]
    private static partial Regex Phrase();

    public static PairVerdict Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return PairVerdict.Unparseable;
        }

        if (text.Length > 100_000)
        {
            text = text[^100_000..];
        }

        var lines = text.Split('\n');
        for (int i = lines.Length - 1; i >= 0; i--)
        {
            var markers = Marker().Matches(lines[i]).Select(m => m.Groups[1].Value.ToUpperInvariant()).Distinct().ToList();
            if (markers.Count == 1)
            {
                return FromWord(markers[0]);
            }

            if (markers.Count > 1)
            {
                return PairVerdict.Unparseable;
            }
        }

        for (int i = lines.Length - 1; i >= 0; i--)
        {
            var m = Labeled().Match(lines[i]);
            if (m.Success)
            {
                return FromWord(m.Groups[1].Value.ToUpperInvariant());
            }
        }

        var phrases = Phrase().Matches(text).Select(m => m.Groups[1].Value.ToUpperInvariant()).Distinct().ToList();
        return phrases.Count == 1 ? FromWord(phrases[0]) : PairVerdict.Unparseable;
    }

    private static PairVerdict FromWord(string w) => w switch
    {
        "A" => PairVerdict.A,
        "B" => PairVerdict.B,
        _ => PairVerdict.Tie,
    };
}

/// <summary>
/// A comparison turned into a training example for the critic: the comparison prompt and the verdict the verifier
/// implies, with what the critic said. One JSON object per line (<see cref="ToJsonLine"/>).
/// </summary>
public sealed record CriticTrainingExample(
    string Prompt,
    string Target,
    string? CriticOutput,
    PairVerdict CriticVerdict,
    bool CriticAgreed,
    double RewardA,
    double RewardB)
{
    public string ToJsonLine() => JsonSerializer.Serialize(this, GymJson.Options);
}

/// <summary>
/// The closed loop of SPEC §3: on prompts that also have a verifier, each comparison between two responses with
/// different verifier rewards has a right answer. Records whether the critic gave it (critic accuracy; ties and
/// unparseable verdicts count as wrong) and emits those comparisons as training examples.
/// Thread-safe.
/// </summary>
public sealed class CriticCalibration
{
    private readonly object gate = new();

    public int Agreed { get; private set; }

    public int Disagreed { get; private set; }

    /// <summary>Of the disagreements, how many were ties or unparseable.</summary>
    public int NoVerdict { get; private set; }

    /// <summary>Pairs skipped because the verifier scored both the same.</summary>
    public int Undecided { get; private set; }

    public double Accuracy
    {
        get
        {
            lock (gate)
            {
                return Agreed + Disagreed == 0 ? double.NaN : Agreed / (double)(Agreed + Disagreed);
            }
        }
    }

    public IReadOnlyList<CriticTrainingExample> Record(CriticScores scores, IReadOnlyList<double> verifierRewards)
    {
        var examples = new List<CriticTrainingExample>();
        lock (gate)
        {
            foreach (var o in scores.Outcomes)
            {
                double ra = verifierRewards[o.Comparison.First], rb = verifierRewards[o.Comparison.Second];
                if (ra == rb)
                {
                    Undecided++;
                    continue;
                }

                var right = ra > rb ? PairVerdict.A : PairVerdict.B;
                bool agreed = o.Verdict == right;
                if (agreed)
                {
                    Agreed++;
                }
                else
                {
                    Disagreed++;
                    if (o.Verdict is PairVerdict.Tie or PairVerdict.Unparseable)
                    {
                        NoVerdict++;
                    }
                }

                examples.Add(new CriticTrainingExample(o.Comparison.Prompt, right == PairVerdict.A ? "Verdict: [[A]]" : "Verdict: [[B]]",
                    o.Raw, o.Verdict, agreed, ra, rb));
            }
        }

        return examples;
    }
}
