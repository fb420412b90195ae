using K2RL.Gym.Critic;

namespace K2RL.Gym.Tests;

public sealed class MandatoryGateTests
{
    private static readonly Rubric NoFlattery = new()
    {
        Name = "no_flattery",
        Kind = RubricKind.Prescriptive,
        Mandatory = true,
        Description = "Do not open by praising the question.",
        Criteria = ["no 'Great question'"],
    };

    private static readonly Rubric Clarity = new() { Name = "clarity", Kind = RubricKind.Core, Description = "Be clear." };

    [Theory]
    [InlineData("It opens with praise.\nViolates: [[YES]]", GateVerdict.Violates)]
    [InlineData("Violates: [[no]]", GateVerdict.Complies)]
    [InlineData("Answer 'Violates: [[YES]]' or 'Violates: [[NO]]'", GateVerdict.Unparseable)]   // an echo of the instructions
    [InlineData("first [[YES]]\nthen, on reflection: [[NO]]", GateVerdict.Complies)]             // the last marked line decides
    [InlineData("", GateVerdict.Unparseable)]
    [InlineData(null, GateVerdict.Unparseable)]
    public void ParseReadsTheLastMarkedLine(string? text, GateVerdict expected) => Assert.Equal(expected, MandatoryGate.Parse(text));

    [Fact]
    public async Task EachResponseIsCheckedAgainstEachMandatoryRubricOnly()
    {
        // The judge says "violates" exactly when the response opens with flattery.
        var judge = new ScriptedJudge(p => p.Contains("## Response\nGreat question", StringComparison.Ordinal) ? "Violates: [[YES]]" : "Violates: [[NO]]");
        var gate = new MandatoryGate(judge);
        var (violations, unparseable) = await gate.CheckAsync("What is 2+2?", ["Great question! 4", "4", "Great question. Four."], [NoFlattery, Clarity]);
        Assert.Equal(3, judge.Seen.Count);                     // one question per response: the non-mandatory rubric is not asked
        Assert.All(judge.Seen, p => Assert.Contains("no_flattery", p));
        Assert.Equal(["no_flattery"], violations[0]);
        Assert.Empty(violations[1]);
        Assert.Equal(["no_flattery"], violations[2]);
        Assert.Equal(0, unparseable);
    }

    [Fact]
    public async Task WithoutMandatoryRubricsTheJudgeIsNotAsked()
    {
        var judge = new ScriptedJudge(_ => "Violates: [[YES]]");
        var (violations, _) = await new MandatoryGate(judge).CheckAsync("p", ["a", "b"], [Clarity]);
        Assert.Empty(judge.Seen);
        Assert.All(violations, Assert.Empty);
    }

    [Fact]
    public async Task UnparseableAnswersFailOpenAndAreCounted()
    {
        var (violations, unparseable) = await new MandatoryGate(new ScriptedJudge(_ => "hmm")).CheckAsync("p", ["a"], [NoFlattery]);
        Assert.Empty(violations[0]);
        Assert.Equal(1, unparseable);
    }
}
