using System.Text;
using K2RL.Common.Chat;
using K2RL.Gym;

namespace K2RL.Gym.Tests;

public class EnvironmentTests
{
    private static readonly GymRegistry Registry = GymRegistry.CreateDefault();

    private static async Task<TaskEnvironment> Arithmetic(long seed = 7)
    {
        var env = (TaskEnvironment)Registry.CreateEnvironment("arithmetic");
        var obs = await env.ResetAsync(seed, new ResetOptions { Difficulty = 2 });
        Assert.Equal(Role.System, obs.Messages[0].Role);
        Assert.Equal(env.Task!.Prompt, obs.Messages[^1].Content);
        return env;
    }

    [Fact]
    public async Task CorrectAndWrongAnswers()
    {
        var env = await Arithmetic();
        var right = await env.StepAsync($"Let me think.\nAnswer: {env.Task!.Answer}");
        Assert.True(right.Terminated);
        Assert.Equal(1.0, right.Reward);
        Assert.True(right.Info.Correct);

        await env.ResetAsync(7, new ResetOptions { Difficulty = 2 });
        var wrong = await env.StepAsync("Answer: 1");
        Assert.Equal(0.0, wrong.Reward);
        Assert.False(wrong.Info.Correct);
        Assert.Contains("Incorrect", wrong.Observation.Messages[0].Content);
    }

    [Fact]
    public async Task MissingAnswerLineIsAFormatPenalty()
    {
        var env = await Arithmetic();
        var step = await env.StepAsync("I think it is big.");
        Assert.True(step.Reward < 0);
        Assert.Contains("no 'Answer:' line", step.Observation.Messages[0].Content);
    }

    [Fact]
    public async Task OversizedActionIsAnObservationAndAPenalty()
    {
        var env = await Arithmetic();
        var step = await env.StepAsync(new string('x', env.Limits.MaxActionChars + 1));
        Assert.Equal(-env.Limits.InvalidActionPenalty, step.Reward);
        Assert.Contains("action too long", step.Info.Error);
        Assert.Contains("action too long", step.Observation.Messages[0].Content);
        Assert.True(step.Done);
    }

    [Fact]
    public async Task InvalidUtf8IsAnObservationAndAPenalty()
    {
        var env = await Arithmetic();
        string decoded = TextChecks.DecodeUtf8([(byte)'A', 0xC3, 0x28, 0xFF]);
        var step = await env.StepAsync(decoded);
        Assert.Contains("invalid UTF-8", step.Info.Error);
        Assert.True(step.Reward < 0);

        await env.ResetAsync(1);
        var surrogate = await env.StepAsync("Answer: 5\uD800");
        Assert.Contains("lone surrogate", surrogate.Info.Error);
    }

    [Fact]
    public async Task StepAfterTheEndSaysSo()
    {
        var env = await Arithmetic();
        await env.StepAsync("Answer: 3");
        var again = await env.StepAsync("Answer: 3");
        Assert.True(again.Terminated);
        Assert.Contains("episode is over", again.Info.Error);
    }

    [Fact]
    public async Task ToolCallsInASingleTurnEnvironmentArePenalized()
    {
        var env = await Arithmetic();
        var step = await env.StepAsync(ChatFormat.FormatToolCall("calculator", 0, new { expression = "1+1" }));
        Assert.Contains("has no tools", step.Info.Error);
        Assert.True(step.Reward < 0);
    }

    [Fact]
    public async Task DegenerateOutputIsPenalized()
    {
        var env = await Arithmetic();
        var step = await env.StepAsync(string.Concat(Enumerable.Repeat("the answer is maybe ", 40)) + "Answer: 1");
        Assert.Equal(-env.Limits.DegeneratePenalty, step.Reward);
        Assert.Contains("degenerate", step.Observation.Messages[0].Content);
    }

    [Fact]
    public async Task StepBeforeResetIsAProgrammingError()
    {
        await using var env = Registry.CreateEnvironment("countdown");
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await env.StepAsync("x"));
    }

    [Fact]
    public async Task CountdownAcceptsAnyValidExpression()
    {
        await using var env = (TaskEnvironment)Registry.CreateEnvironment("countdown");
        await env.ResetAsync(11, new ResetOptions { Difficulty = 2 });
        var task = env.Task!;
        var step = await env.StepAsync($"Answer: {task.Answer} = {task.Params["target"]}");
        Assert.True(step.Info.Correct, step.Info.Data.GetValueOrDefault("reason"));

        var verifier = new CountdownVerifier();
        var fake = task with { Params = new Dictionary<string, string> { ["numbers"] = "2,3,5", ["target"] = "25" } };
        Assert.True((await verifier.VerifyAsync(new VerifyRequest("Answer: (2 + 3) * 5", fake))).Passed);
        Assert.False((await verifier.VerifyAsync(new VerifyRequest("Answer: 5 * 5", fake))).Passed);
        Assert.False((await verifier.VerifyAsync(new VerifyRequest("Answer: 2 * 3 + 5", fake))).Passed);
        Assert.Contains("not an available number", (await verifier.VerifyAsync(new VerifyRequest("Answer: 25", fake))).Reason);
    }

    [Fact]
    public async Task SnapshotRestoresIntoAFreshInstance()
    {
        await using var env = (TaskEnvironment)Registry.CreateEnvironment("list_ops");
        await env.ResetAsync(5, new ResetOptions { Difficulty = 3, Split = Split.HeldOut });
        byte[] bytes = await env.SnapshotAsync();
        Assert.Equal((byte)'K', bytes[0]);
        Assert.Equal((byte)'2', bytes[1]);

        await using var fresh = (TaskEnvironment)GymRegistry.CreateDefault().CreateEnvironment("list_ops");
        await fresh.RestoreAsync(bytes);
        Assert.Equal(env.Task!.ToJson(), fresh.Task!.ToJson());
        var a = await env.StepAsync($"Answer: {env.Task.Answer}");
        var b = await fresh.StepAsync($"Answer: {env.Task.Answer}");
        Assert.Equal(a, b with { Info = a.Info, Observation = a.Observation });
        Assert.Equal(a.Observation.Messages, b.Observation.Messages);
        Assert.True(b.Info.Correct);
    }

    [Fact]
    public async Task BadSnapshotsAreRefusedWithAReason()
    {
        await using var env = Registry.CreateEnvironment("arithmetic");
        await env.ResetAsync(1);
        byte[] good = await env.SnapshotAsync();

        await using var other = Registry.CreateEnvironment("countdown");
        Assert.Contains("not 'countdown'", (await Assert.ThrowsAsync<SnapshotException>(async () => await other.RestoreAsync(good))).Message);
        Assert.Contains("magic", (await Assert.ThrowsAsync<SnapshotException>(async () => await env.RestoreAsync(Encoding.UTF8.GetBytes("hello world")))).Message);
        Assert.Contains("truncated", (await Assert.ThrowsAsync<SnapshotException>(async () => await env.RestoreAsync(good.AsMemory(0, good.Length - 5)))).Message);
        byte[] badVersion = (byte[])good.Clone();
        badVersion[4] = 99;
        Assert.Contains("version", (await Assert.ThrowsAsync<SnapshotException>(async () => await env.RestoreAsync(badVersion))).Message);
    }
}
