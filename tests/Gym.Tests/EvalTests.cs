using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Eval;
using K2RL.Gym.Tasks;

namespace K2RL.Gym.Tests;

public class EvalTests
{
    [Theory]
    [InlineData(5, 0, 1, 0.0)]
    [InlineData(5, 5, 3, 1.0)]
    [InlineData(4, 1, 1, 0.25)]
    [InlineData(4, 1, 2, 0.5)]
    [InlineData(10, 3, 5, 1 - 21.0 / 252)]
    public void PassAtKIsTheUnbiasedEstimator(int n, int c, int k, double expected) =>
        Assert.Equal(expected, Evaluator.PassAtK(n, c, k), 9);

    [Fact]
    public async Task ScriptedPolicyOnTheHeldOutSplit()
    {
        var registry = GymRegistry.CreateDefault();
        // Correct on even tasks always; on odd tasks only for sample 0 of 4.
        var policy = new ScriptedPolicy(req =>
        {
            string prompt = req.Conversation[^1].Content;
            var task = new ArithmeticGenerator().Generate(req.Task, Split.HeldOut, 2);
            Assert.Equal(task.Prompt, prompt);
            return req.Task % 2 == 0 || req.Sample == 0 ? task.Solution : "Answer: -1";
        });
        var report = await Evaluator.RunAsync("arithmetic", () => registry.CreateEnvironment("arithmetic"), policy,
            new EvalOptions { N = 20, SamplesPerTask = 4, Difficulty = 2 });
        Assert.Equal(20, report.N);
        Assert.Equal((10 * 4 + 10 * 1) / 80.0, report.Accuracy, 9);
        Assert.Equal(report.Accuracy, report.PassAtK[1], 9);
        Assert.Equal(1.0, report.PassAtK[4], 9);
        Assert.Equal(0.5 + 0.5 * 0.5, report.PassAtK[2], 9);
        Assert.Contains("\"pass_at_k\":{\"1\":", report.ToJson());
        Assert.Contains("\"env\":\"arithmetic\"", report.ToJson());
    }

    [Fact]
    public async Task MultiTurnEpisodesRunToTheEnd()
    {
        var registry = GymRegistry.CreateDefault();
        // Looks up every item, then computes with the calculator, then answers from the calculator's result.
        var policy = new ScriptedPolicy(req =>
        {
            var tools = req.Conversation.Where(m => m.Role == Role.Tool).ToList();
            var task = new ToolUseGenerator().Generate(req.Task, Split.HeldOut, 1);
            if (tools.Count == 0)
            {
                return ChatFormat.FormatToolCalls(ToolUseGenerator.Table(task).Keys.Select((k, i) =>
                    ToolCall.Create("lookup", i, $"{{\"key\": \"{k}\"}}")));
            }

            return $"Answer: {task.Answer}";
        });
        var report = await Evaluator.RunAsync("tool_use", () => registry.CreateEnvironment("tool_use"), policy,
            new EvalOptions { N = 10 });
        Assert.Equal(1.0, report.Accuracy);
        Assert.Equal(0, report.Truncated);
    }
}
