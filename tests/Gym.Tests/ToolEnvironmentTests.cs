using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Tasks;

namespace K2RL.Gym.Tests;

public class ToolEnvironmentTests
{
    private static async Task<(ToolTaskEnvironment Env, Observation Obs)> Start(long seed = 4, int difficulty = 2)
    {
        var env = (ToolTaskEnvironment)GymRegistry.CreateDefault().CreateEnvironment("tool_use");
        var obs = await env.ResetAsync(seed, new ResetOptions { Difficulty = difficulty });
        return (env, obs);
    }

    private static string Call(string name, int index, object args) => ChatFormat.FormatToolCall(name, index, args);

    [Fact]
    public async Task SolvesAnEpisodeWithLookupsAndTheCalculator()
    {
        var (env, obs) = await Start();
        Assert.Equal(["calculator", "lookup"], obs.Tools.Select(t => t.Name).Order());
        var table = ToolUseGenerator.Table(env.Task!);
        string item = table.Keys.First();

        var looked = await env.StepAsync("Looking it up." + Call("lookup", 0, new { key = item }));
        Assert.False(looked.Done);
        Assert.Equal(0.0, looked.Reward);
        var result = Assert.Single(looked.Observation.Messages);
        Assert.Equal(Role.Tool, result.Role);
        Assert.Equal("functions.lookup:0", result.ToolCallId);
        Assert.Equal(table[item], result.Content);

        var calc = await env.StepAsync(Call("calculator", 1, new { expression = "3 * (2 + 0.5)" }));
        Assert.Equal("7.5", calc.Observation.Messages[0].Content);

        var final = await env.StepAsync($"Answer: {env.Task!.Answer}");
        Assert.True(final.Terminated);
        Assert.Equal(1.0, final.Reward);
        Assert.Equal("2", final.Info.Data["tool_calls"]);
    }

    [Fact]
    public async Task MalformedAndUnknownCallsArePenalizedAndTheEpisodeGoesOn()
    {
        var (env, _) = await Start();
        var malformed = await env.StepAsync("<|tool_calls_section_begin|><|tool_call_begin|>functions.lookup:0<|tool_call_argument_begin|>{oops}<|tool_call_end|><|tool_calls_section_end|>");
        Assert.False(malformed.Done);
        Assert.Equal(-env.Limits.InvalidActionPenalty, malformed.Reward);
        Assert.Contains("not a JSON object", malformed.Observation.Messages[0].Content);

        var unknown = await env.StepAsync(Call("web_search", 0, new { q = "x" }));
        Assert.False(unknown.Done);
        Assert.Equal(-env.Limits.InvalidActionPenalty, unknown.Reward);
        Assert.Contains("unknown tool 'web_search'", unknown.Observation.Messages[0].Content);
        Assert.Equal(Role.Tool, unknown.Observation.Messages[0].Role);

        var badArgs = await env.StepAsync(Call("calculator", 1, new { expr = "1" }) );
        Assert.Contains("missing argument 'expression'", badArgs.Observation.Messages[0].Content);
        var badExpr = await env.StepAsync(Call("calculator", 2, new { expression = "1 / 0" }));
        Assert.Contains("division by zero", badExpr.Observation.Messages[0].Content);
        Assert.Equal(4, env.BadCalls);

        var final = await env.StepAsync($"Answer: {env.Task!.Answer}");
        Assert.True(final.Info.Correct);
    }

    [Fact]
    public async Task RunsOutOfTurns()
    {
        var (env, _) = await Start();
        StepResult last = null!;
        for (int i = 0; i < env.Limits.MaxTurns; i++)
        {
            last = await env.StepAsync(Call("calculator", i, new { expression = "1+1" }));
        }

        Assert.True(last.Truncated);
        Assert.False(last.Terminated);
    }

    [Fact]
    public async Task SnapshotMidEpisodeResumesInAFreshEnvironment()
    {
        var (env, _) = await Start(seed: 9, difficulty: 3);
        await env.StepAsync(Call("nope", 0, new { }));
        await env.StepAsync(Call("lookup", 1, new { key = ToolUseGenerator.Table(env.Task!).Keys.First() }));
        byte[] snapshot = await env.SnapshotAsync();

        var (fresh, _) = await Start(seed: 1, difficulty: 1);
        await fresh.RestoreAsync(snapshot);
        Assert.Equal(env.Task!.ToJson(), fresh.Task!.ToJson());
        Assert.Equal(2, fresh.ToolCalls);
        Assert.Equal(1, fresh.BadCalls);
        var a = await env.StepAsync(Call("calculator", 2, new { expression = "2*21" }));
        var b = await fresh.StepAsync(Call("calculator", 2, new { expression = "2*21" }));
        Assert.Equal(a.Observation.Messages, b.Observation.Messages);
        for (int i = 0; i < env.Limits.MaxTurns - 3; i++)
        {
            a = await env.StepAsync("x" + Call("calculator", 3, new { expression = "1" }));
            b = await fresh.StepAsync("x" + Call("calculator", 3, new { expression = "1" }));
        }

        Assert.True(a.Truncated);
        Assert.True(b.Truncated);
    }

    [Fact]
    public async Task TheWorkedTranscriptPlaysThroughTheEnvironment()
    {
        var (env, _) = await Start(seed: 21, difficulty: 3);
        string transcript = env.Task!.Solution;
        var turns = transcript.Split(ChatFormat.AssistantPrefix, StringSplitOptions.RemoveEmptyEntries)
            .Select(t => t[..t.IndexOf(ChatTokens.ImEnd, StringComparison.Ordinal)]).ToList();
        StepResult step = null!;
        foreach (string action in turns)
        {
            step = await env.StepAsync(action);
            if (!step.Done)
            {
                foreach (var m in step.Observation.Messages)
                {
                    Assert.Contains(ChatFormat.Render([m]), transcript);
                }
            }
        }

        Assert.True(step.Terminated);
        Assert.True(step.Info.Correct);
    }
}
