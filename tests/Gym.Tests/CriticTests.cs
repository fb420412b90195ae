using System.Text.Json;
using K2RL.Gym;
using K2RL.Gym.Critic;

namespace K2RL.Gym.Tests;

public class CriticTests
{
    private static readonly Rubric Core = new() { Name = "clarity", Description = "Clear.", Criteria = ["Answers it."] };

    private static readonly Rubric Mandatory = new()
    {
        Name = "no_praise", Kind = RubricKind.Prescriptive, Mandatory = true, Description = "No flattery.",
    };

    private static readonly Rubric Research = new()
    {
        Name = "cites", Kind = RubricKind.TaskSpecific, Description = "Cites.", AppliesTo = ["research"],
    };

    [Fact]
    public void BuildsEveryPairInBothOrdersWithTheApplicableRubrics()
    {
        var protocol = new CriticProtocol(ScriptedJudge.PreferLonger(), [Core, Mandatory, Research]);
        var comparisons = protocol.BuildComparisons("Explain tides.", ["r0", "r1", "r2", "r3"]);
        Assert.Equal(12, comparisons.Count);
        Assert.Equal(12, comparisons.Select(c => (c.First, c.Second)).Distinct().Count());
        string p = comparisons[0].Prompt;
        Assert.Contains("Explain tides.", p);
        Assert.Contains("Mandatory", p);
        Assert.Contains("- no_praise: No flattery.", p);
        Assert.Contains("  - Answers it.", p);
        Assert.DoesNotContain("cites", p);
        Assert.Contains("cites", protocol.BuildComparisons("q", ["a", "b"], ["research"])[0].Prompt);
        Assert.Equal(("r0", "r1"), CriticProtocol.ResponsesOf(comparisons[0].Prompt));
        Assert.Equal(("r1", "r0"), CriticProtocol.ResponsesOf(comparisons[1].Prompt));

        var oneOrder = new CriticProtocol(ScriptedJudge.PreferLonger(), [Core], new CriticOptions { BothOrders = false });
        Assert.Equal(6, oneOrder.BuildComparisons("q", ["a", "b", "c", "d"]).Count);
    }

    [Fact]
    public void ABriefPromptNamesAndDescribesEachRubricWithoutItsCriteria()
    {
        var brief = new CriticProtocol(ScriptedJudge.PreferLonger(), [Core, Mandatory], new CriticOptions { RubricDetail = RubricDetail.Brief });
        var full = new CriticProtocol(ScriptedJudge.PreferLonger(), [Core, Mandatory]);
        string b = brief.BuildComparisons("Explain tides.", ["r0", "r1"])[0].Prompt, f = full.BuildComparisons("Explain tides.", ["r0", "r1"])[0].Prompt;
        Assert.Contains("- clarity: Clear.", b);
        Assert.Contains("- no_praise: No flattery.", b);
        Assert.Contains("Mandatory", b);
        Assert.DoesNotContain("Answers it.", b);
        Assert.Contains("Answers it.", f);
        Assert.Equal(("r0", "r1"), CriticProtocol.ResponsesOf(b));
        Assert.Equal(f.Replace("  - Answers it.\n", ""), b);
    }

    [Theory]
    [InlineData("Reasoning... Verdict: [[A]]", PairVerdict.A)]
    [InlineData("verdict: [[ b ]]", PairVerdict.B)]
    [InlineData("[[TIE]]", PairVerdict.Tie)]
    [InlineData("Verdict: [[A]] or Verdict: [[B]]", PairVerdict.Unparseable)]
    [InlineData("First I thought [[A]].\nOn reflection: [[B]]", PairVerdict.B)]
    [InlineData("Winner: Response B", PairVerdict.B)]
    [InlineData("**Verdict:** A", PairVerdict.A)]
    [InlineData("Decision - tie", PairVerdict.Tie)]
    [InlineData("Overall, Response A is better.", PairVerdict.A)]
    [InlineData("Response A is better in style but Response B is better in substance.", PairVerdict.Unparseable)]
    [InlineData("I cannot decide.", PairVerdict.Unparseable)]
    [InlineData("", PairVerdict.Unparseable)]
    [InlineData(null, PairVerdict.Unparseable)]
    [InlineData("\u0000\uFFFD[[", PairVerdict.Unparseable)]
    public void ParsesVerdictsRobustly(string? text, PairVerdict expected) => Assert.Equal(expected, VerdictParser.Parse(text));

    [Fact]
    public async Task RewardsFollowTheJudgeByWinRateAndBradleyTerry()
    {
        var protocol = new CriticProtocol(ScriptedJudge.PreferLonger(), [Core]);
        string[] responses = ["short", "a bit longer", "the longest response of all", "mid length one"];
        var scores = await protocol.ScoreAsync("q", responses);
        Assert.Equal(0, scores.Unparseable);
        Assert.Equal([0.0, 1.0 / 3, 1.0, 2.0 / 3], scores.WinRate, (x, y) => Math.Abs(x - y) < 1e-9);
        var order = Enumerable.Range(0, 4).OrderBy(i => scores.BradleyTerry[i]).ToArray();
        Assert.Equal([0, 1, 3, 2], order);
        Assert.True(scores.BradleyTerry.All(x => x is > 0 and < 1));
        Assert.Equal(2.0, scores.BradleyTerry.Sum(), 6);
        Assert.Equal(0.0, scores.Strength.Sum(), 9);
    }

    [Fact]
    public void BradleyTerryMatchesTheClosedFormForTwoPlayers()
    {
        // A beats B 3 times out of 4; with 0.5 pseudo-games split evenly: p_A/p_B = 3.25 / 1.25.
        var games = new double[2, 2];
        games[0, 1] = games[1, 0] = 4;
        var p = CriticProtocol.BradleyTerryFit([3, 1], games, 0.5, 500);
        Assert.Equal(3.25 / 1.25, p[0] / p[1], 6);
        Assert.Equal(1.0, p[0] * p[1], 9);
    }

    [Fact]
    public async Task UnparseableVerdictsAreCountedNotFatal()
    {
        int call = 0;
        var judge = new ScriptedJudge(_ => (call++ % 3) switch { 0 => "Verdict: [[A]]", 1 => "¯\\_(ツ)_/¯", _ => null });
        var scores = await new CriticProtocol(judge, [Core]).ScoreAsync("q", ["a", "b", "c"]);
        Assert.Equal(6, scores.Comparisons);
        Assert.Equal(4, scores.Unparseable);
        Assert.All(scores.BradleyTerry, x => Assert.False(double.IsNaN(x)));
    }

    [Fact]
    public async Task NoVerdictsAtAllGiveNeutralRewards()
    {
        var scores = await new CriticProtocol(new ScriptedJudge(_ => "no idea"), [Core]).ScoreAsync("q", ["a", "b", "c"]);
        Assert.All(scores.WinRate, x => Assert.Equal(0.5, x));
        Assert.All(scores.BradleyTerry, x => Assert.Equal(0.5, x, 9));
    }

    [Fact]
    public async Task CalibrationScoresTheCriticAgainstTheVerifierAndEmitsExamples()
    {
        string[] responses = ["Answer: 4", "Answer: 5", "Answer: 4 because 2+2", "Answer: 3"];
        double[] verifier = [1, 0, 1, 0];
        var right = new ScriptedJudge(p =>
        {
            var (a, b) = CriticProtocol.ResponsesOf(p);
            bool ca = a.Contains(": 4"), cb = b.Contains(": 4");
            return ca == cb ? "[[TIE]]" : ca ? "Verdict: [[A]]" : "Verdict: [[B]]";
        });
        var calibration = new CriticCalibration();
        var examples = calibration.Record(await new CriticProtocol(right, [Core]).ScoreAsync("2+2?", responses), verifier);
        Assert.Equal(1.0, calibration.Accuracy);
        Assert.Equal(8, examples.Count);
        Assert.Equal(4, calibration.Undecided);

        var contrary = ScriptedJudge.PreferLonger();
        var wrongCalibration = new CriticCalibration();
        wrongCalibration.Record(await new CriticProtocol(contrary, [Core]).ScoreAsync("2+2?", responses), verifier);
        Assert.True(wrongCalibration.Accuracy < 1.0);

        using var doc = JsonDocument.Parse(examples[0].ToJsonLine());
        Assert.Contains("Verdict: [[", doc.RootElement.GetProperty("target").GetString());
        Assert.True(doc.RootElement.GetProperty("critic_agreed").GetBoolean());
        Assert.Contains("2+2?", doc.RootElement.GetProperty("prompt").GetString());
    }
}
