using System.Collections.Concurrent;
using System.Diagnostics;
using K2RL.Common.Chat;
using Grpc.Net.Client;
using K2RL.Common.Rpc;
using K2RL.Gym;
using K2RL.Gym.Remote;
using K2RL.Tests.Shared;

namespace K2RL.Gym.Tests;

/// <summary>
/// An environment written in JavaScript (tests/interop/gym_env_server.js, served by @grpc/grpc-js from
/// protos/k2rl/v1/gym.proto) driven by K2RL's RemoteEnvironment client.
/// </summary>
public sealed class GymInteropIntegrationTests : IAsyncLifetime
{
    private readonly ConcurrentQueue<string> output = new();
    private readonly TaskCompletionSource<int> port = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Process node = null!;
    private GrpcChannel client = null!;

    private static string InteropDir => Path.Combine(ExternalTools.RepoRoot(), "tests", "interop");

    public async Task InitializeAsync()
    {
        string nodePath = ExternalTools.Require("node", "nodejs");
        ExternalTools.InteropDirectory();

        var psi = new ProcessStartInfo(nodePath)
        {
            WorkingDirectory = InteropDir,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("gym_env_server.js");
        psi.ArgumentList.Add(Path.Combine(ExternalTools.RepoRoot(), "protos", "k2rl", "v1", "gym.proto"));
        node = Process.Start(psi)!;
        node.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            output.Enqueue(e.Data);
            if (e.Data.StartsWith("listening ", StringComparison.Ordinal))
            {
                port.TrySetResult(int.Parse(e.Data["listening ".Length..]));
            }
        };
        node.ErrorDataReceived += (_, e) => output.Enqueue("stderr: " + e.Data);
        node.BeginOutputReadLine();
        node.BeginErrorReadLine();
        var done = await Task.WhenAny(port.Task, node.WaitForExitAsync(), Task.Delay(TimeSpan.FromSeconds(30)));
        if (done != port.Task)
        {
            throw new InvalidOperationException("gym_env_server.js did not start:\n" + string.Join('\n', output));
        }

        client = GrpcChannels.Create(new Uri($"http://127.0.0.1:{port.Task.Result}/"), new GrpcClientOptions { ConnectTimeout = TimeSpan.FromSeconds(2) });
    }

    public async Task DisposeAsync()
    {
        client.Dispose();
        if (!node.HasExited)
        {
            node.Kill(entireProcessTree: true);
            await node.WaitForExitAsync();
        }

        node.Dispose();
    }

    private static int Sum(Observation obs)
    {
        string q = obs.Messages[^1].Content;
        var parts = q["What is ".Length..^1].Split(" + ");
        return int.Parse(parts[0]) + int.Parse(parts[1]);
    }

    [Fact]
    public async Task PlaysAMultiTurnEpisodeOfTheJavaScriptEnvironment()
    {
        await using var env = new RemoteEnvironment(client, "js_sum");
        var obs = await env.ResetAsync(42, new ResetOptions { Difficulty = 2 });
        Assert.Equal(Role.System, obs.Messages[0].Role);
        Assert.Equal("none", Assert.Single(obs.Tools).Name);
        var again = await new RemoteEnvironment(client, "js_sum").ResetAsync(42, new ResetOptions { Difficulty = 2 });
        Assert.Equal(obs.Messages, again.Messages);

        var hint = await env.StepAsync("hint");
        Assert.False(hint.Done);
        Assert.Equal($"The sum ends in {Sum(obs) % 10}.", hint.Observation.Messages[0].Content);
        var junk = await env.StepAsync("¯\\_(ツ)_/¯");
        Assert.Equal(-0.1, junk.Reward);
        Assert.Equal("no answer", junk.Info.Error);

        var final = await env.StepAsync($"Answer: {Sum(obs)}");
        Assert.True(final.Terminated);
        Assert.Equal(1.0, final.Reward);
        Assert.True(final.Info.Correct);
    }

    [Fact]
    public async Task SnapshotAndRestoreThroughTheJavaScriptServer()
    {
        await using var env = new RemoteEnvironment(client, "js_sum");
        var obs = await env.ResetAsync(7);
        await env.StepAsync("hint");
        byte[] snapshot = await env.SnapshotAsync();
        Assert.StartsWith("JSGYM1:", System.Text.Encoding.UTF8.GetString(snapshot));

        await using var resumed = new RemoteEnvironment(client, "js_sum");
        await resumed.RestoreAsync(snapshot);
        var final = await resumed.StepAsync($"Answer: {Sum(obs) + 1}");
        Assert.False(final.Info.Correct);
        Assert.True(final.Terminated);

        await using var wrong = new RemoteEnvironment(client, "js_sum");
        var e = await Assert.ThrowsAsync<RemoteEnvironmentException>(async () => await wrong.RestoreAsync(new byte[] { 1, 2, 3 }));
        Assert.Contains("not a js_sum snapshot", e.Message);
        var unknown = await Assert.ThrowsAsync<RemoteEnvironmentException>(async () => await new RemoteEnvironment(client, "nope").ResetAsync(1));
        Assert.Contains("InvalidArgument", unknown.Message);
    }

    [Fact]
    public async Task AHungThenDeadJavaScriptServerFailsTheEpisodeInTime()
    {
        await using var env = new RemoteEnvironment(client, "js_sum", new RemoteEnvironmentOptions { StepTimeout = TimeSpan.FromMilliseconds(700) });
        await env.ResetAsync(3);
        var watch = Stopwatch.StartNew();
        var hung = await env.StepAsync("HANG");

        // The server never answers HANG, so returning at all with DeadlineExceeded is the event under test; the
        // generous bound (not a speed test on a shared machine) only says the 700 ms deadline, not a test timeout, ended it.
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), watch.Elapsed.ToString());
        Assert.True(hung.Truncated);
        Assert.Contains("DeadlineExceeded", hung.Info.Failure);

        await using var second = new RemoteEnvironment(client, "js_sum", new RemoteEnvironmentOptions { StepTimeout = TimeSpan.FromSeconds(3) });
        await second.ResetAsync(4);
        node.Kill(entireProcessTree: true);
        await node.WaitForExitAsync();
        watch.Restart();
        var dead = await second.StepAsync("Answer: 1");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), watch.Elapsed.ToString()); // returned: not stuck on a dead peer
        Assert.True(dead.Truncated);
        Assert.NotNull(dead.Info.Failure);
    }
}
