using Google.Protobuf;
using K2RL.Common.Chat;
using Grpc.Core;
using Grpc.Net.Client;
using K2RL.Common.Rpc;
using K2RL.Gym;
using K2RL.Gym.Remote;
using K2RL.Gym.Tasks;
using Wire = K2RL.Protos.Gym;

namespace K2RL.Gym.Tests;

/// <summary>A real gRPC server (Grpc.AspNetCore on Kestrel) hosting the Gym service in-process, driven by RemoteEnvironment over HTTP/2.</summary>
public sealed class RemoteEnvironmentIntegrationTests : IAsyncLifetime
{
    private RemoteEnvironmentServer server = null!;
    private GrpcChannel client = null!;

    /// <summary>Environments that misbehave: one whose Step never returns.</summary>
    private sealed class HangingEnvironment() : EnvironmentBase("hang", new EnvironmentLimits { MaxTurns = 5 })
    {
        protected override ValueTask<Observation> OnResetAsync(CancellationToken ct) => ValueTask.FromResult(Observation.Of(Message.UserText("go")));

        protected override async ValueTask<StepResult> OnStepAsync(string action, CancellationToken ct)
        {
            await Task.Delay(Timeout.Infinite, ct);
            throw new InvalidOperationException("unreachable");
        }

        protected override void WriteState(SnapshotWriter w)
        {
        }

        protected override void ReadState(SnapshotReader r)
        {
        }
    }

    private static GymRegistry Registry()
    {
        var r = GymRegistry.CreateDefault();
        r.AddEnvironment("hang", "never answers a step", _ => new HangingEnvironment());
        return r;
    }

    public async Task InitializeAsync()
    {
        server = await RemoteEnvironmentServer.StartAsync(Registry());
        client = GrpcChannels.Create(server.Address);
    }

    public async Task DisposeAsync()
    {
        client.Dispose();
        await server.DisposeAsync();
    }

    [Fact]
    public async Task ARemoteEpisodeMatchesTheLocalOne()
    {
        await using var local = (TaskEnvironment)GymRegistry.CreateDefault().CreateEnvironment("countdown");
        await using var remote = new RemoteEnvironment(client, "countdown");
        var options = new ResetOptions { Difficulty = 2, Split = Split.HeldOut };
        var lo = await local.ResetAsync(5, options);
        var ro = await remote.ResetAsync(5, options);
        Assert.Equal(lo.Messages, ro.Messages);
        string action = local.Task!.Solution;
        var ls = await local.StepAsync(action);
        var rs = await remote.StepAsync(action);
        Assert.Equal((ls.Reward, ls.Terminated, ls.Truncated, ls.Info.Correct), (rs.Reward, rs.Terminated, rs.Truncated, rs.Info.Correct));
        Assert.Equal(ls.Observation.Messages, rs.Observation.Messages);
        Assert.Equal(ls.Info.Data, rs.Info.Data);
    }

    [Fact]
    public async Task MultiTurnToolEpisodeWithSnapshotIntoAFreshServer()
    {
        await using var remote = new RemoteEnvironment(client, "tool_use");
        var obs = await remote.ResetAsync(8, new ResetOptions { Difficulty = 2 });
        Assert.Equal(2, obs.Tools.Count);
        var task = new ToolUseGenerator().Generate(8, Split.Train, 2);
        string key = ToolUseGenerator.Table(task).Keys.First();
        var step = await remote.StepAsync(ChatFormat.FormatToolCall("lookup", 0, new Dictionary<string, string> { ["key"] = key }));
        Assert.Equal(Role.Tool, step.Observation.Messages[0].Role);
        Assert.Equal("functions.lookup:0", step.Observation.Messages[0].ToolCallId);
        byte[] snapshot = await remote.SnapshotAsync();

        // Another server process stands in for a restart: the episode continues there from the bytes.
        await using var other = await RemoteEnvironmentServer.StartAsync(Registry());
        using var otherClient = GrpcChannels.Create(other.Address);
        await using var resumed = new RemoteEnvironment(otherClient, "tool_use");
        await resumed.RestoreAsync(snapshot);
        var final = await resumed.StepAsync($"Answer: {task.Answer}");
        Assert.True(final.Terminated);
        Assert.True(final.Info.Correct);
        Assert.Equal("1", final.Info.Data["tool_calls"]);
    }

    [Fact]
    public async Task InvalidUtf8BytesBecomeAPenaltyNotAnError()
    {
        await using var remote = new RemoteEnvironment(client, "arithmetic");
        await remote.ResetAsync(1);
        var reply = await new Wire.Gym.GymClient(client).StepAsync(new Wire.StepRequest
        {
            Session = remote.Session,
            Action = ByteString.CopyFrom(0x41, 0xC3, 0x28, 0xFF),
        });
        Assert.Contains("invalid UTF-8", reply.Info.Error);
        Assert.True(reply.Reward < 0);
    }

    [Fact]
    public async Task ProtocolErrorsAreStatuses()
    {
        var gym = new Wire.Gym.GymClient(client);
        var notFound = await Assert.ThrowsAsync<RpcException>(() => gym.StepAsync(
            new Wire.StepRequest { Session = "nobody", Action = ByteString.CopyFromUtf8("x") }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, notFound.StatusCode);

        await using var chess = new RemoteEnvironment(client, "chess");
        var e = await Assert.ThrowsAsync<RemoteEnvironmentException>(async () => await chess.ResetAsync(1));
        Assert.Contains("unknown environment 'chess'", e.Message);

        var badSnapshot = await Assert.ThrowsAsync<RpcException>(() => gym.RestoreAsync(
            new Wire.RestoreRequest { Session = "s1", Env = "arithmetic", State = ByteString.CopyFromUtf8("garbage!") }).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, badSnapshot.StatusCode);
        Assert.Contains("magic", badSnapshot.Status.Detail);
    }

    [Fact]
    public async Task AHungRemoteGivesAFailedEpisodeWithinTheTimeout()
    {
        await using var remote = new RemoteEnvironment(client, "hang", new RemoteEnvironmentOptions { StepTimeout = TimeSpan.FromMilliseconds(500) });
        await remote.ResetAsync(1);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var step = await remote.StepAsync("anything");

        // The environment waits forever, so returning with DeadlineExceeded is the event; the bound is generous for
        // a shared, loaded machine and only rules out a test-level timeout having ended the call.
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), watch.Elapsed.ToString());
        Assert.True(step.Truncated);
        Assert.True(step.Failed);
        Assert.False(step.Info.Correct);
        Assert.Contains("DeadlineExceeded", step.Info.Failure);
        var again = await remote.StepAsync("more");
        Assert.True(again.Truncated);
        Assert.Contains("failed earlier", again.Info.Failure);
    }

    [Fact]
    public async Task ADeadRemoteGivesAFailedEpisodeNotAStuckCaller()
    {
        var doomed = await RemoteEnvironmentServer.StartAsync(Registry());
        using var doomedClient = GrpcChannels.Create(doomed.Address, new GrpcClientOptions { ConnectTimeout = TimeSpan.FromSeconds(2) });
        await using var remote = new RemoteEnvironment(doomedClient, "arithmetic", new RemoteEnvironmentOptions { StepTimeout = TimeSpan.FromSeconds(3) });
        await remote.ResetAsync(2);
        await doomed.DisposeAsync();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var step = await remote.StepAsync("Answer: 1");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), watch.Elapsed.ToString()); // returned: not stuck on a dead peer
        Assert.True(step.Truncated);
        Assert.True(step.Failed);
        Assert.NotNull(step.Info.Failure);
    }

    [Fact]
    public async Task SessionLimitIsAStatusAndIdleSessionsAreClosed()
    {
        await using var small = await RemoteEnvironmentServer.StartAsync(Registry(), options: new GymServiceOptions
        {
            MaxSessions = 2,
            IdleTimeout = TimeSpan.FromSeconds(2),
        });
        using var c = GrpcChannels.Create(small.Address);

        // Eviction runs when a session opens, so the three resets below must fall within one idle timeout: warm the
        // connection and the server's code paths first (a loaded CI machine once took over 300 ms for them), then
        // keep the timeout well above what three warm resets take.
        var warm = new RemoteEnvironment(c, "arithmetic");
        await warm.ResetAsync(0);
        await warm.CloseAsync();
        Assert.Equal(0, small.Service.SessionCount);
        await new RemoteEnvironment(c, "arithmetic").ResetAsync(1);
        await new RemoteEnvironment(c, "arithmetic").ResetAsync(2);
        var e = await Assert.ThrowsAsync<RemoteEnvironmentException>(async () => await new RemoteEnvironment(c, "arithmetic").ResetAsync(3));
        Assert.Contains("ResourceExhausted", e.Message);

        await Task.Delay(TimeSpan.FromSeconds(2.5));
        await new RemoteEnvironment(c, "arithmetic").ResetAsync(4);
        Assert.Equal(1, small.Service.SessionCount);
    }

    [Fact]
    public async Task CloseEndsTheSession()
    {
        var remote = new RemoteEnvironment(client, "list_ops");
        await remote.ResetAsync(3);
        int before = server.Service.SessionCount;
        await remote.CloseAsync();
        Assert.Equal(before - 1, server.Service.SessionCount);
    }
}
