using System.Globalization;
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
    [InlineData("arithmetic", false)]
    [InlineData("countdown", false)]
    [InlineData("list_ops", false)]
    [InlineData("arithmetic", true)]   // the detailed solutions: other steps, the same answer line
    [InlineData("list_ops", true)]
    [InlineData("countdown", true)]
    public async Task WorkedSolutionsScoreFullMarks(string kind, bool detailed)
    {
        var registry = GymRegistry.CreateDefault();
        for (int d = 1; d <= 5; d++)
        {
            for (int seed = 0; seed < 50; seed++)
            {
                await using var env = (TaskEnvironment)registry.CreateEnvironment(kind);
                await env.ResetAsync(seed, new ResetOptions { Difficulty = d });
                string solution = detailed ? env.Task!.DetailedSolution! : env.Task!.Solution;
                if (detailed)
                {
                    Assert.NotEqual(env.Task.Solution, solution);
                    Assert.Equal(env.Task.Solution.Split('\n')[^1], solution.Split('\n')[^1]);
                }

                var step = await env.StepAsync(solution);
                Assert.True(step.Info.Correct, $"{kind} d={d} seed={seed}: {env.Task.Prompt}\n{solution}\n{step.Info.Data.GetValueOrDefault("reason")}");
                Assert.Equal(1.0, step.Reward);
            }
        }
    }

    [Theory]
    [InlineData(958, 67, "+", "hundreds: 9 + 0 + 1 = 10, write 0, carry 1. So far: 025", "thousands: the carry 1, write 1. So far: 1025")]
    [InlineData(26, 7, "+", "7 has tens 0, ones 7.", "tens: 2 + 0 + 1 = 3, write 3. So far: 33")]   // digits named by place first
    [InlineData(15, 2, "-", "15 has tens 1, ones 5.", "tens: 1 - 0 = 1. So far: 13")]
    [InlineData(402, 38, "-", "tens: 0 - 3 - 1 (lent): 0 < 4, borrow: 10 - 4 = 6. So far: 64", "hundreds: 4 - 0 - 1 (lent): 4 - 1 = 3. So far: 364")]
    [InlineData(47, 38, "-", "ones: 7 - 8: 7 < 8, borrow: 17 - 8 = 9. So far: 9", "tens: 4 - 3 - 1 (lent): 4 - 4 = 0. So far: 09")]
    [InlineData(47, 8, "*", "ones: 7 * 8 = 56, write 6, carry 5. So far: 6", "tens: 4 * 8 = 32, + 5 = 37, write 37. So far: 376")]
    [InlineData(123, 45, "*", "tens digit 4: 123 * 4 = 492, shifted 1 place: 4920", "615 + 4920 = 5535")]
    public void DetailedArithmeticWritesEveryDigitFactAndTheResultSoFar(long a, long b, string op, string line, string later)
    {
        string steps = op switch
        {
            "+" => ArithmeticGenerator.DetailedAddition(a, b),
            "-" => ArithmeticGenerator.DetailedSubtraction(a, b),
            _ => ArithmeticGenerator.DetailedMultiplication(a, b),
        };
        var lines = steps.Split('\n');
        Assert.True(Array.IndexOf(lines, line) >= 0 && Array.IndexOf(lines, line) < Array.IndexOf(lines, later), steps);
        long result = op switch { "+" => a + b, "-" => a - b, _ => a * b };
        Assert.Equal($"So {a} {op} {b} = {result}.", lines[^1]);
    }

    [Fact]
    public void DetailedListOpsWalkOneElementAtATime()
    {
        Assert.Equal("positions: 1: 5, 2: 3, 3: 8, 4: 3\nthe smallest left each time: 3 (position 2), 3 (position 4), 5 (position 1), 8 (position 3)\n",
            ListOpsGenerator.Walk("sort", [5, 3, 8, 3], 0));
        Assert.Equal("positions: 1: 5, 2: 3, 3: 8\nfrom position 3 back to 1: 8, 3, 5\n", ListOpsGenerator.Walk("reverse", [5, 3, 8], 0));
        Assert.Equal("5 new, 3 new, 5 seen\n", ListOpsGenerator.Walk("dedupe", [5, 3, 5], 0));
        Assert.Equal("5 odd, 4 even\n", ListOpsGenerator.Walk("evens", [5, 4], 0));
        Assert.Equal("0 + 5 = 5\n5 + 4 = 9\n", ListOpsGenerator.Walk("sum", [5, 4], 0));
        Assert.Equal("start with 5; 9: 9; 2: 9\n", ListOpsGenerator.Walk("max", [5, 9, 2], 0));
        Assert.Equal("positions: 1: 5, 2: 9, 3: 2\npositions 1 to 2\n", ListOpsGenerator.Walk("first", [5, 9, 2], 2));
    }

    [Fact]
    public void DetailedCountdownTriesOtherChainsAndChecksEachAgainstTheTarget()
    {
        var g = new CountdownGenerator();
        var triesSeen = new HashSet<int>();
        for (int d = 1; d <= 3; d++)
        {
            for (int seed = 0; seed < 200; seed++)
            {
                var task = g.Generate(seed, Split.Train, d);
                Assert.Equal(task.DetailedSolution, g.Generate(seed, Split.Train, d).DetailedSolution);
                long target = long.Parse(task.Params["target"], CultureInfo.InvariantCulture);
                string[] blocks = task.DetailedSolution!.Split("Try:\n");
                Assert.Equal("", blocks[0]);
                var chains = new List<string>();
                for (int b = 1; b < blocks.Length; b++)
                {
                    var lines = blocks[b].TrimEnd('\n').Split('\n');
                    bool last = b == blocks.Length - 1;
                    int checkAt = last ? lines.Length - 2 : lines.Length - 1;
                    var available = task.Params["numbers"].Split(',').Select(long.Parse).ToList();
                    long? running = null;
                    for (int i = 0; i < checkAt; i++)
                    {
                        // "a op b = c": after the first line one operand is the previous result, the other a number not used yet
                        var m = System.Text.RegularExpressions.Regex.Match(lines[i], @"^(\d+) ([-+*/]) (\d+) = (\d+)$");
                        Assert.True(m.Success, lines[i]);
                        long x = long.Parse(m.Groups[1].Value), y = long.Parse(m.Groups[3].Value), z = long.Parse(m.Groups[4].Value);
                        Assert.Equal(m.Groups[2].Value switch { "+" => x + y, "-" => x - y, "*" => x * y, _ => x / y }, z);
                        Assert.True(m.Groups[2].Value != "/" || x % y == 0, lines[i]);
                        if (running is null)
                        {
                            Assert.True(available.Remove(x) && available.Remove(y), $"{task.Prompt}: {lines[i]}");
                        }
                        else
                        {
                            Assert.True(x == running || y == running, lines[i]);
                            Assert.True(available.Remove(x == running ? y : x), $"{task.Prompt}: {lines[i]}");
                        }

                        running = z;
                    }

                    Assert.NotNull(running);
                    Assert.Equal(last ? $"{target}, target {target}: yes." : $"{running}, target {target}: no.", lines[checkAt]);
                    Assert.True(last || running != target);
                    chains.Add(string.Join("\n", lines[..checkAt]));
                    if (last)
                    {
                        Assert.Equal(task.Solution, string.Join("\n", lines[..checkAt]) + "\n" + lines[^1]);
                    }
                }

                Assert.Equal(chains.Count, chains.Distinct().Count());
                triesSeen.Add(blocks.Length - 2);
            }
        }

        // zero to three tries before the answer, each count drawn somewhere
        Assert.Equal([0, 1, 2, 3], triesSeen.Order());
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
