using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Gym.Critic;
using K2RL.Gym.Critic.Workbench;

namespace K2RL.Gym.Tests;

public class JudgeWorkbenchTests
{
    internal static readonly IReadOnlyList<Rubric> Rubrics =
    [
        new Rubric { Name = "clear", Description = "Clear." },
        new Rubric { Name = "no_praise", Kind = RubricKind.Prescriptive, Mandatory = true, Description = "No praise." },
        new Rubric { Name = "tests_pass", Kind = RubricKind.TaskSpecific, AppliesTo = ["code"], Description = "Tests pass." },
    ];

    /// <summary>q1: lengths 1, 3, 2 and verifier rewards in the same order; q2: tagged code, no rewards.</summary>
    internal static readonly IReadOnlyList<JudgeInputItem> Items =
    [
        new JudgeInputItem { Line = 1, Id = "q1", Prompt = "first?", Responses = ["a", "bbb", "cc"], Rewards = [0, 1, 0.5] },
        new JudgeInputItem { Line = 2, Id = "q2", Prompt = "second?", Responses = ["xx", "y"], Tags = ["code"] },
    ];

    internal static WorkbenchJudge AlwaysA() => new("always-a", new ScriptedJudge(_ => "I pick the first.\nVerdict: [[A]]"));

    private static Task<WorkbenchResult> Run(bool bothOrders, params WorkbenchJudge[] judges) =>
        JudgeWorkbench.RunAsync(Rubrics, Items, judges, new WorkbenchOptions { BothOrders = bothOrders });

    [Fact]
    public async Task AConsistentJudgeGetsScoresPositionAgreementAndAccuracy()
    {
        var result = await Run(true, new WorkbenchJudge("longer", ScriptedJudge.PreferLonger()));
        var q1 = result.Prompts[0].Judges[0];
        Assert.Equal(6, q1.Comparisons.Count);
        Assert.Equal([0.0, 1.0, 0.5], q1.Scores.WinRate);
        Assert.True(q1.Scores.BradleyTerry[1] > q1.Scores.BradleyTerry[2] && q1.Scores.BradleyTerry[2] > q1.Scores.BradleyTerry[0]);
        var responses = Items[0].Responses;
        Assert.All(q1.Comparisons, c => Assert.Equal(responses[c.First].Length > responses[c.Second].Length ? c.First : c.Second, c.Winner));
        Assert.Equal(["clear", "no_praise"], result.Prompts[0].Rubrics.Select(r => r.Name));
        Assert.Equal(["clear", "no_praise", "tests_pass"], result.Prompts[1].Rubrics.Select(r => r.Name));

        var summary = Assert.Single(result.Judges);
        Assert.Equal((8, 0), (summary.Comparisons, summary.Unparseable));
        Assert.Equal((4, 4), (summary.Positions.Pairs, summary.Positions.Consistent));
        Assert.Equal((6, 0), (summary.Accuracy!.Agreed, summary.Accuracy.Disagreed));   // longer is better, as the verifier says
        Assert.Null(result.Agreement);
        Assert.False(result.Prompts[0].OrdersDisagree || result.Prompts[0].VerifierDisagrees || result.Prompts[0].JudgesDisagree);
    }

    [Fact]
    public async Task TwoJudgesAgreementMatchesTheHandCount()
    {
        var result = await Run(true, new WorkbenchJudge("longer", ScriptedJudge.PreferLonger()), AlwaysA());
        // 8 comparisons; "longer" says A on 4 (the longer one shown first) and B on 4; "always-a" says A on all 8.
        // equal 4 of 8; p_e = 0.5 * 1 + 0.5 * 0 = 0.5, so kappa = (0.5 - 0.5) / 0.5 = 0.
        var a = result.Agreement!;
        Assert.Equal((8, 4, 0), (a.Compared, a.Equal, a.Excluded));
        Assert.Equal(0.0, a.Kappa, 12);
        var biased = result.Judges[1];
        Assert.Equal((4, 0), (biased.Positions.Pairs, biased.Positions.Consistent));
        Assert.Equal(1.0, biased.Positions.FirstShare);
        Assert.Equal(3, biased.Accuracy!.Agreed);   // of q1's 6 ordered comparisons, A is the better one in 3
        Assert.True(result.Prompts[0].JudgesDisagree && result.Prompts[0].OrdersDisagree && result.Prompts[0].VerifierDisagrees);
        Assert.True(result.Prompts[1].JudgesDisagree && result.Prompts[1].OrdersDisagree && !result.Prompts[1].VerifierDisagrees);
    }

    [Fact]
    public async Task AFailedOrJunkAnswerIsUnparseableWithTheReason()
    {
        var silent = new WorkbenchJudge("silent", new ScriptedJudge(_ => null));
        var junk = new WorkbenchJudge("junk", new ScriptedJudge(_ => "Both have merits."));
        var result = await Run(false, silent, junk);
        Assert.All(result.Prompts.SelectMany(p => p.Judges[0].Comparisons), c =>
            Assert.Equal((PairVerdict.Unparseable, (string?)null, "judge 'scripted' gave no answer"), (c.Verdict, c.Text, c.Problem)));
        Assert.All(result.Prompts.SelectMany(p => p.Judges[1].Comparisons), c =>
            Assert.Equal((PairVerdict.Unparseable, "Both have merits.", "no verdict found in the judge's text"), (c.Verdict, c.Text, c.Problem)));
        Assert.Equal([0.5, 0.5, 0.5], result.Prompts[0].Judges[0].Scores.WinRate);
        Assert.Equal((4, 4, "judge 'scripted' gave no answer"), (result.Judges[0].Comparisons, result.Judges[0].Unparseable, result.Judges[0].Failure));
        Assert.Equal((0, 4), (result.Agreement!.Compared, result.Agreement.Excluded));
        Assert.True(double.IsNaN(result.Agreement.Kappa));
        Assert.Equal((0, 3, 3), (result.Judges[0].Accuracy!.Agreed, result.Judges[0].Accuracy!.Disagreed, result.Judges[0].Accuracy!.NoVerdict));
    }

    [Fact]
    public async Task ALineNoRubricAppliesToIsAnErrorNamingItsTags()
    {
        IReadOnlyList<Rubric> onlyCode = [Rubrics[2]];
        var e = await Assert.ThrowsAsync<ConfigException>(() => JudgeWorkbench.RunAsync(onlyCode, Items, [AlwaysA()],
            new WorkbenchOptions { RubricSource = "rubrics/" }));
        Assert.Equal("line 1 (q1): no rubric in rubrics/ applies to tags [] (its rubrics are task-specific and apply to the tags: code)", e.Message);
        // the same rubrics with --tags code: every line has one
        var result = await JudgeWorkbench.RunAsync(onlyCode, Items, [AlwaysA()], new WorkbenchOptions { ExtraTags = ["code"] });
        Assert.Equal(["code"], result.Prompts[0].Tags);
        Assert.Throws<ConfigException>(() => JudgeWorkbench.Check([], Items, new WorkbenchOptions()));
    }

    [Fact]
    public async Task JsonHasEveryVerdictWithItsTextAndNullForStatisticsWithNothingToCount()
    {
        var json = WorkbenchReport.ToJson(await Run(false, AlwaysA()));
        var parsed = JsonNode.Parse(json.ToJsonString())!;
        Assert.False(parsed["both_orders"]!.GetValue<bool>());
        Assert.Null(parsed["agreement"]);
        var judge = parsed["judges"]![0]!;
        Assert.Null(judge["position_bias"]!["agreement"]);
        Assert.Equal(0, judge["position_bias"]!["pairs"]!.GetValue<int>());
        Assert.Equal(1 / 3.0, judge["critic_accuracy"]!["accuracy"]!.GetValue<double>(), 12);   // A is the better one in 1 of q1's 3 pairs
        var comparison = parsed["prompts"]![0]!["judges"]![0]!["comparisons"]![0]!;
        Assert.Equal(("A", 0, "I pick the first.\nVerdict: [[A]]"), (comparison["verdict"]!.GetValue<string>(), comparison["winner"]!.GetValue<int>(), comparison["text"]!.GetValue<string>()));
        Assert.Equal(["clear", "no_praise", "tests_pass"], parsed["prompts"]![1]!["rubrics"]!.AsArray().Select(n => n!.GetValue<string>()));
    }

    [Fact]
    public async Task TextNamesEachVerdictAndTheOverallStatistics()
    {
        var w = new StringWriter();
        WorkbenchReport.WriteText(await Run(true, new WorkbenchJudge("longer", ScriptedJudge.PreferLonger()), AlwaysA()), w);
        string text = w.ToString();
        Assert.Contains("== q1 (line 1): 3 responses; tags []; rubrics clear, no_praise*", text);
        Assert.Contains("    #1 (A) vs #2 (B): #2 wins | Verdict: [[B]]", text);
        Assert.Contains("position bias: the same winner in both orders on 0 of 4 pairs (0 %); A won 8 of 8 decided comparisons (100 %)", text);
        Assert.Contains("agreement between the judges: 4 of 8 comparisons equal (50 %), Cohen's kappa 0;", text);
    }
}
