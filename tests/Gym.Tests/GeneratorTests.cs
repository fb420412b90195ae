using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Tasks;

namespace K2RL.Gym.Tests;

public class GeneratorTests
{
    public static TheoryData<string> Kinds => new() { "arithmetic", "countdown", "list_ops", "tool_use", "code" };

    private static ITaskGenerator Generator(string kind) => GymRegistry.CreateDefault().Generators[kind];

    [Theory]
    [MemberData(nameof(Kinds))]
    public void SameSeedSameTask(string kind)
    {
        var g = Generator(kind);
        for (int d = 1; d <= 3; d++)
        {
            Assert.Equal(g.Generate(42, Split.Train, d).ToJson(), g.Generate(42, Split.Train, d).ToJson());
            Assert.Equal(g.Generate(42, Split.HeldOut, d).ToJson(), g.Generate(42, Split.HeldOut, d).ToJson());
        }

        Assert.NotEqual(g.Generate(1, Split.Train, 2).Id, g.Generate(2, Split.Train, 2).Id);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void TrainAndHeldOutNeverOverlap(string kind)
    {
        var g = Generator(kind);
        for (int d = 1; d <= 3; d++)
        {
            var train = Enumerable.Range(0, 400).Select(s => g.Generate(s, Split.Train, d)).ToList();
            var held = Enumerable.Range(0, 100).Select(s => g.Generate(s, Split.HeldOut, d)).ToList();
            Assert.All(train, t => Assert.Equal(Split.Train, SplitAssigner.SplitOf(kind, t.Id)));
            Assert.All(held, t => Assert.Equal(Split.HeldOut, SplitAssigner.SplitOf(kind, t.Id)));
            Assert.Empty(train.Select(t => t.Id).Intersect(held.Select(t => t.Id)));
            Assert.True(held.Select(t => t.Id).Distinct().Count() > 1, "held-out split has one task only");
        }
    }

    [Theory]
    [InlineData("arithmetic")]
    [InlineData("countdown")]
    [InlineData("list_ops")]
    public async Task WorkedSolutionsScoreFullMarks(string kind)
    {
        var registry = GymRegistry.CreateDefault();
        for (int d = 1; d <= 5; d++)
        {
            for (int seed = 0; seed < 40; seed++)
            {
                await using var env = (TaskEnvironment)registry.CreateEnvironment(kind);
                await env.ResetAsync(seed, new ResetOptions { Difficulty = d });
                var step = await env.StepAsync(env.Task!.Solution);
                Assert.True(step.Info.Correct, $"{kind} d={d} seed={seed}: {env.Task.Prompt}\n{env.Task.Solution}\n{step.Info.Data.GetValueOrDefault("reason")}");
                Assert.Equal(1.0, step.Reward);
            }
        }
    }

    [Fact]
    public void ArithmeticDifficultyGrowsTheOperands()
    {
        var g = new ArithmeticGenerator();
        int Digits(int d) => Enumerable.Range(0, 50).Max(s => g.Generate(s, Split.Train, d).Answer.TrimStart('-').Length);
        Assert.True(Digits(1) < Digits(3) && Digits(3) < Digits(5));
    }

    [Fact]
    public void ArithmeticSolutionShowsCarries()
    {
        string steps = ArithmeticGenerator.AdditionSteps(958, 67);
        Assert.Contains("8 + 7 = 15: write 5, carry 1", steps);
        Assert.Contains("So 958 + 67 = 1025.", steps);
    }

    [Fact]
    public void ToolUseSolutionIsAChatTranscriptWithCalculatorCalls()
    {
        var task = new ToolUseGenerator().Generate(3, Split.Train, 2);
        Assert.StartsWith(ChatFormat.AssistantPrefix, task.Solution);
        Assert.Contains("functions.calculator:", task.Solution);
        Assert.Contains("## Return of functions.lookup:0", task.Solution);
        Assert.EndsWith($"Answer: {task.Answer}<|im_end|>", task.Solution);
        string doc = task.ToChatDocument([BuiltinTools.CalculatorSpec, BuiltinTools.LookupSpec]);
        Assert.StartsWith("<|im_system|>tool_declare<|im_middle|>", doc);
    }

    [Fact]
    public void CodeTasksCarryTestsAndAReferenceProgram()
    {
        var task = new CodeGenerator().Generate(5, Split.Train, 3);
        Assert.Equal(3, task.Tests.Count);
        Assert.Equal("python3", task.Params["interpreter"]);
        Assert.StartsWith("```python\n", task.Solution);
    }

    [Fact]
    public void TaskJsonRoundTrips()
    {
        var task = new CodeGenerator().Generate(9, Split.HeldOut, 2);
        Assert.Equal(task.ToJson(), GymTask.FromJson(task.ToJson()).ToJson());
    }
}
