using K2RL.Gym;
using K2RL.Gym.Tasks;

namespace K2RL.Gym.Tests;

public class VerifierTests
{
    private static GymTask Task(string answer, Dictionary<string, string>? ps = null) => new()
    {
        Kind = "t", Id = "t", Prompt = "p", Answer = answer, Solution = "s", Params = ps ?? new Dictionary<string, string>(),
    };

    private static VerifierResult V(IVerifier v, string response, GymTask task) =>
        v.VerifyAsync(new VerifyRequest(response, task)).AsTask().Result;

    [Theory]
    [InlineData("Work...\nAnswer: 42", "42")]
    [InlineData("answer = 42.", "42")]
    [InlineData("**Final Answer:** 42", "42")]
    [InlineData("so \\boxed{17}", "17")]
    [InlineData("Answer: 1\nhmm, no.\nAnswer: 2<|im_end|>", "2")]
    public void ExtractsTheLastAnswer(string response, string expected)
    {
        Assert.True(AnswerExtractor.TryExtract(response, out string a));
        Assert.Equal(expected, a);
    }

    [Fact]
    public void NumericToleranceAndFormats()
    {
        var v = new NumericVerifier();
        Assert.True(V(v, "Answer: 1,234", Task("1234")).Passed);
        Assert.True(V(v, "Answer: $12.50", Task("12.5")).Passed);
        Assert.False(V(v, "Answer: 12.51", Task("12.5")).Passed);
        Assert.True(V(v, "Answer: 12.51", Task("12.5", new() { ["tolerance"] = "0.001" })).Passed);
        Assert.Contains("not a number", V(v, "Answer: twelve", Task("12")).Reason);
        Assert.Contains("no 'Answer:' line", V(v, "12", Task("12")).Reason);
    }

    [Fact]
    public void ExactMatchNormalizesListsAndCase()
    {
        var v = new ExactMatchVerifier();
        Assert.True(V(v, "Answer: [1,2, 3]", Task("[1, 2, 3]")).Passed);
        Assert.True(V(v, "Answer: `Hello`", Task("hello")).Passed);
        Assert.False(V(v, "Answer: [1, 3, 2]", Task("[1, 2, 3]")).Passed);
    }

    [Fact]
    public void FormatAndDegenerateChecks()
    {
        Assert.True(V(new FormatVerifier(@"^Step"), "Step 1\nAnswer: x", Task("x")).Passed);
        Assert.False(V(new FormatVerifier(@"^Step"), "Answer: x", Task("x")).Passed);
        var degenerate = new DegenerateVerifier(0.5);
        Assert.Equal(-0.5, V(degenerate, new string('a', 200), Task("x")).Reward);
        Assert.Equal(-0.5, V(degenerate, string.Concat(Enumerable.Repeat("I will now repeat this ", 30)), Task("x")).Reward);
        Assert.Equal(0.0, V(degenerate, "A normal sentence with a few words. Answer: 3", Task("x")).Reward);
        Assert.False(TextRepetition.IsDegenerate(ArithmeticGenerator.MultiplicationSteps(98765, 4321), out _));
    }

    [Fact]
    public void ExpressionsEvaluateExactly()
    {
        Assert.True(Expression.TryEvaluate("0.1 + 0.2", out decimal v, out _, out _));
        Assert.Equal(0.3m, v);
        Assert.True(Expression.TryEvaluate("-(2 + 3) * 4 / 8", out v, out _, out var lits));
        Assert.Equal(-2.5m, v);
        Assert.Equal([2m, 3m, 4m, 8m], lits);
        Assert.False(Expression.TryEvaluate("2 +", out _, out string? e1, out _));
        Assert.Contains("ends early", e1);
        Assert.False(Expression.TryEvaluate("import os", out _, out _, out _));
        Assert.False(Expression.TryEvaluate(new string('(', 300) + "1" + new string(')', 300), out _, out string? e2, out _));
        Assert.Contains("deeply", e2);
        Assert.False(Expression.TryEvaluate("99999999999999999999 * 99999999999999999999", out _, out string? e3, out _));
        Assert.Contains("too large", e3);
    }

    [Fact]
    public void ExtractsTheLastFencedProgram()
    {
        Assert.Equal("print(2)\n", UnitTestVerifier.ExtractProgram("```python\nprint(1)\n```\nbetter:\n```python\nprint(2)\n```"));
        Assert.Equal("print(3)", UnitTestVerifier.ExtractProgram("print(3)"));
    }
}
