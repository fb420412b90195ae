using K2RL.Common;

namespace K2RL.Gym.Critic.Workbench;

/// <summary>A judge of the workbench and the name it is reported under (<c>checkpoint:runs/x</c>, an endpoint URL).</summary>
public sealed record WorkbenchJudge(string Label, IJudge Judge);

/// <summary>What the workbench is asked to do.</summary>
public sealed record WorkbenchOptions
{
    /// <summary>Ask each pair in both orders too (needed for the position-bias agreement).</summary>
    public bool BothOrders { get; init; }

    /// <summary>Tags added to every prompt's own tags (they pick task-specific rubrics).</summary>
    public IReadOnlyList<string> ExtraTags { get; init; } = [];

    /// <summary>Where the rubrics came from, for messages.</summary>
    public string RubricSource { get; init; } = "the rubric directory";

    /// <summary>Longest response text put in a comparison prompt.</summary>
    public int MaxResponseChars { get; init; } = 6000;

    /// <summary>Rubric criteria in the prompt too, or names and descriptions only.</summary>
    public RubricDetail RubricDetail { get; init; } = RubricDetail.Full;
}

/// <summary>One comparison as the evaluator sees it: who was shown first, the verdict, the judge's text, and why there is no verdict.</summary>
public sealed record JudgedComparison(int First, int Second, PairVerdict Verdict, string? Text, string? Problem)
{
    /// <summary>The winning response's index, or -1 (tie, no verdict).</summary>
    public int Winner => Verdict switch { PairVerdict.A => First, PairVerdict.B => Second, _ => -1 };
}

/// <summary>One judge on one prompt: every comparison, and the scores they give.</summary>
public sealed record JudgeOnPrompt(string Judge, IReadOnlyList<JudgedComparison> Comparisons, CriticScores Scores);

/// <summary>One prompt judged: its tags, the rubrics that applied, and each judge's comparisons and scores.</summary>
public sealed record PromptResult(JudgeInputItem Item, IReadOnlyList<string> Tags, IReadOnlyList<Rubric> Rubrics,
    IReadOnlyList<JudgeOnPrompt> Judges)
{
    /// <summary>Some comparison where the two judges gave different verdicts (both parseable).</summary>
    public bool JudgesDisagree => Judges.Count == 2 && Judges[0].Comparisons.Zip(Judges[1].Comparisons)
        .Any(p => p.First.Verdict != p.Second.Verdict && p.First.Verdict != PairVerdict.Unparseable && p.Second.Verdict != PairVerdict.Unparseable);

    /// <summary>Some judge named different winners for the same pair in its two orders.</summary>
    public bool OrdersDisagree => Judges.Any(j => { var b = Agreement.Positions([j.Scores.Outcomes]); return b.Consistent < b.Pairs; });

    /// <summary>Some judge preferred the response with the lower verifier reward, or gave no verdict where the verifier decides.</summary>
    public bool VerifierDisagrees => Item.Rewards is { } r && Judges.Any(j => j.Comparisons.Any(c =>
        r[c.First] != r[c.Second] && c.Winner != (r[c.First] > r[c.Second] ? c.First : c.Second)));
}

/// <summary>One judge over the whole input.</summary>
/// <param name="Accuracy">the critic's agreement with the verifier rewards (SPEC §3's closed loop); null when no line has rewards.</param>
/// <param name="Failure">the last reason a comparison got no answer, if any.</param>
public sealed record JudgeSummary(string Judge, int Comparisons, int Unparseable, PositionBias Positions, CriticCalibration? Accuracy,
    string? Failure);

/// <summary>Everything <c>k2rl gym judge</c> reports.</summary>
public sealed record WorkbenchResult(IReadOnlyList<PromptResult> Prompts, IReadOnlyList<JudgeSummary> Judges, JudgeAgreement? Agreement,
    WorkbenchOptions Options)
{
    /// <summary>Every rubric that applied to some prompt, in first-seen order.</summary>
    public IReadOnlyList<string> RubricNames => Prompts.SelectMany(p => p.Rubrics.Select(r => r.Name)).Distinct().ToList();
}

/// <summary>
/// The evaluator's rubric workbench: puts K responses per prompt to one or two judges with <see cref="CriticProtocol"/>'s
/// comparison prompts (the RL job's own), parses the verdicts with <see cref="VerdictParser"/>, and reports, per prompt,
/// every verdict with the judge's text, win rates and Bradley–Terry scores; overall, position-bias agreement
/// (<see cref="Agreement.Positions"/>), critic accuracy against verifier rewards (<see cref="CriticCalibration"/>) and,
/// with two judges, their agreement (share of equal verdicts, Cohen's kappa). A judge that fails a comparison
/// (timeout, HTTP error, garbage) gives an unparseable verdict with the reason; nothing here throws for it.
/// </summary>
public static class JudgeWorkbench
{
    public static async Task<WorkbenchResult> RunAsync(IReadOnlyList<Rubric> rubrics, IReadOnlyList<JudgeInputItem> items,
        IReadOnlyList<WorkbenchJudge> judges, WorkbenchOptions options, Action<string>? progress = null, CancellationToken ct = default)
    {
        if (judges.Count is < 1 or > 2)
        {
            throw new ConfigException($"give one or two judges (got {judges.Count})");
        }

        var criticOptions = new CriticOptions { BothOrders = options.BothOrders, MaxResponseChars = options.MaxResponseChars, RubricDetail = options.RubricDetail };
        var protocol = new CriticProtocol(judges[0].Judge, rubrics, criticOptions);
        var plans = items.Select(item => Plan(protocol, rubrics, item, options)).ToList();   // every rubric check before any judge call
        var prompts = new List<PromptResult>();
        foreach (var (item, tags, applicable) in plans)
        {
            var comparisons = protocol.BuildComparisons(item.Prompt, item.Responses, tags);
            var perJudge = await Task.WhenAll(judges.Select(j => JudgeOneAsync(j, item, comparisons, criticOptions, ct)));
            prompts.Add(new PromptResult(item, tags, applicable, perJudge));
            progress?.Invoke($"{item.Id}: {comparisons.Count} comparisons; " + string.Join("; ", perJudge.Select(j =>
                $"{j.Judge}: {j.Scores.Unparseable} unparseable, win rate [{string.Join(", ", j.Scores.WinRate.Select(w => w.ToString("0.##", System.Globalization.CultureInfo.InvariantCulture)))}]")));
        }

        var summaries = judges.Select((j, i) => Summarize(j.Label, prompts.Select(p => p.Judges[i]).ToList(), prompts)).ToList();
        var agreement = judges.Count == 2
            ? Agreement.BetweenJudges(Verdicts(prompts, 0), Verdicts(prompts, 1))
            : null;
        return new WorkbenchResult(prompts, summaries, agreement, options);
    }

    /// <summary>Checks, before any judge is built, that some rubric applies to every input line (see <see cref="RunAsync"/>).</summary>
    /// <exception cref="ConfigException">a line to which no rubric applies, named with its tags.</exception>
    public static void Check(IReadOnlyList<Rubric> rubrics, IReadOnlyList<JudgeInputItem> items, WorkbenchOptions options)
    {
        var protocol = new CriticProtocol(new ScriptedJudge(_ => null), rubrics);
        foreach (var item in items)
        {
            Plan(protocol, rubrics, item, options);
        }
    }

    /// <summary>The prompt's tags and applicable rubrics; none applying is an error naming the line and the tags.</summary>
    private static (JudgeInputItem Item, IReadOnlyList<string> Tags, IReadOnlyList<Rubric> Rubrics) Plan(CriticProtocol protocol,
        IReadOnlyList<Rubric> rubrics, JudgeInputItem item, WorkbenchOptions options)
    {
        var tags = item.Tags.Concat(options.ExtraTags).Distinct(StringComparer.Ordinal).ToList();
        var applicable = protocol.RubricsFor(tags);
        if (applicable.Count == 0)
        {
            throw new ConfigException($"line {item.Line} ({item.Id}): no rubric in {options.RubricSource} applies to tags [{string.Join(", ", tags)}]" +
                                      RubricCheck.NoneApplyHint(rubrics));
        }

        return (item, tags, applicable);
    }

    private static async Task<JudgeOnPrompt> JudgeOneAsync(WorkbenchJudge judge, JudgeInputItem item,
        IReadOnlyList<PairwiseComparison> comparisons, CriticOptions options, CancellationToken ct)
    {
        var answers = comparisons.Count == 0 ? [] : await judge.Judge.AnswerAsync(comparisons.Select(c => c.Prompt).ToList(), ct);
        var outcomes = new List<PairOutcome>(comparisons.Count);
        var judged = new List<JudgedComparison>(comparisons.Count);
        for (int i = 0; i < comparisons.Count; i++)
        {
            var answer = i < answers.Count ? answers[i] : new JudgeAnswer(null, $"judge '{judge.Label}' gave no answer");
            var verdict = VerdictParser.Parse(answer.Text);
            string? problem = answer.Text is null ? answer.Failure
                : verdict == PairVerdict.Unparseable ? "no verdict found in the judge's text" : null;
            outcomes.Add(new PairOutcome(comparisons[i], answer.Text, verdict));
            judged.Add(new JudgedComparison(comparisons[i].First, comparisons[i].Second, verdict, answer.Text, problem));
        }

        return new JudgeOnPrompt(judge.Label, judged, CriticProtocol.Score(item.Responses.Count, outcomes, options));
    }

    private static JudgeSummary Summarize(string label, IReadOnlyList<JudgeOnPrompt> perPrompt, IReadOnlyList<PromptResult> prompts)
    {
        CriticCalibration? calibration = null;
        for (int i = 0; i < prompts.Count; i++)
        {
            if (prompts[i].Item.Rewards is { } rewards)
            {
                calibration ??= new CriticCalibration();
                calibration.Record(perPrompt[i].Scores, rewards);
            }
        }

        var comparisons = perPrompt.SelectMany(p => p.Comparisons).ToList();
        return new JudgeSummary(label, comparisons.Count, comparisons.Count(c => c.Verdict == PairVerdict.Unparseable),
            Agreement.Positions(perPrompt.Select(p => p.Scores.Outcomes)), calibration,
            comparisons.LastOrDefault(c => c.Text is null)?.Problem);
    }

    private static List<PairVerdict> Verdicts(IReadOnlyList<PromptResult> prompts, int judge) =>
        prompts.SelectMany(p => p.Judges[judge].Comparisons.Select(c => c.Verdict)).ToList();
}
