using System.Text.Json.Nodes;
using Grpc.Core;
using Grpc.Health.V1;
using K2RL.Common;
using K2RL.Common.Rpc;
using K2RL.Protos.V1;
using K2RL.Trainer.Rl;

namespace K2RL.Trainer.Tests.Rl;

/// <summary>
/// Job control over real gRPC (the host, the service, the client): control.json, the token policy (missing and wrong
/// tokens get UNAUTHENTICATED, health needs none), the status it answers, and the client's errors.
/// </summary>
public sealed class JobControlServiceIntegrationTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly string runDir = Directory.CreateTempSubdirectory("k2rl-jobctl-").FullName;

    [Fact]
    public async Task ATokenIsRequiredOnceConfiguredAndHealthNeedsNone()
    {
        string tokenFile = Path.Combine(runDir, "token");
        File.WriteAllText(tokenFile, "right-token\n");
        var token = BearerToken.Load(tokenFile, "--control-token-file")!;
        using var state = new JobControlState();
        state.Report(5, 20, 5, "{\"iteration\":5,\"reward_mean\":0.5}", Path.Combine(runDir, "checkpoints", "step-4"));
        var pool = new TwoWorkers();
        var host = await JobControlHost.StartAsync(HostPort.Parse("127.0.0.1:0", "--control"), token, state, pool, runDir, Serilog.Core.Logger.None);
        var info = JobControlClient.ReadControlFile(runDir);
        Assert.Equal((host.Address.GetLeftPart(UriPartial.Authority), Environment.ProcessId, true), (info.Address.GetLeftPart(UriPartial.Authority), info.Pid, info.TokenRequired));
        Assert.DoesNotContain("right-token", File.ReadAllText(Path.Combine(runDir, JobControlHost.ControlFile)));

        var missing = await Assert.ThrowsAsync<K2Exception>(() => JobControlClient.CallAsync(info.Address, "status", null, Timeout));
        Assert.Contains("UNAUTHENTICATED", missing.Message);
        Assert.Contains("missing", missing.Message);
        Assert.Equal(StatusCode.Unauthenticated, ((RpcException)missing.InnerException!).StatusCode);
        string wrongFile = Path.Combine(runDir, "wrong");
        File.WriteAllText(wrongFile, "wrong-token");
        var wrong = await Assert.ThrowsAsync<K2Exception>(() => JobControlClient.CallAsync(info.Address, "pause", BearerToken.Load(wrongFile, "--token-file"), Timeout));
        Assert.Contains("wrong", wrong.Message);
        Assert.Equal(JobRunState.Running, state.Snapshot().State);   // the refused pause did nothing

        using (var channel = GrpcChannels.Create(info.Address))
        {
            var health = await new Health.HealthClient(channel).CheckAsync(new HealthCheckRequest());
            Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
        }

        var status = await JobControlClient.CallAsync(info.Address, "status", token, Timeout);
        Assert.Equal((5L, 20L, 5L, JobState.Running, Environment.ProcessId), (status.Iteration, status.TotalIterations, status.Version, status.State, status.Pid));
        Assert.Equal(2, status.Workers.Count);
        Assert.Equal(("w-1", 4L, false), (status.Workers[1].Id, status.Workers[1].WeightVersion, status.Workers[1].Healthy));
        Assert.Equal(12, status.QueueDepths["generate"]);
        var json = JobControlClient.ToJson(status, "status", info.Address);
        Assert.Equal(0.5, json["last_metrics"]!["reward_mean"]!.GetValue<double>());
        Assert.Equal("running", json["state"]!.GetValue<string>());
        Assert.Equal(12, json["queue_depths"]!["generate"]!.GetValue<long>());

        Assert.Equal(JobState.Paused, (await JobControlClient.CallAsync(info.Address, "pause", token, Timeout)).State);
        Assert.Equal(JobState.Draining, (await JobControlClient.CallAsync(info.Address, "drain", token, Timeout)).State);
        Assert.Equal(JobState.Running, (await JobControlClient.CallAsync(info.Address, "resume", token, Timeout)).State);
        Assert.Equal(JobState.Stopping, (await JobControlClient.CallAsync(info.Address, "stop", token, Timeout)).State);
        Assert.True(state.StopToken.IsCancellationRequested);

        await host.DisposeAsync();
        Assert.False(File.Exists(Path.Combine(runDir, JobControlHost.ControlFile)));
        var gone = await Assert.ThrowsAsync<K2Exception>(() => JobControlClient.CallAsync(info.Address, "status", token, TimeSpan.FromSeconds(5)));
        Assert.Contains($"job control at {info.Address} is unreachable", gone.Message);
    }

    [Fact]
    public async Task ANonLoopbackAddressWithoutATokenIsRefusedBeforeBinding()
    {
        using var state = new JobControlState();
        var e = await Assert.ThrowsAsync<ConfigException>(() => JobControlHost.StartAsync(HostPort.Parse("0.0.0.0:0", "--control"), null, state,
            EmbeddedWorkerPool.Instance, runDir, Serilog.Core.Logger.None));
        Assert.Contains("--control 0.0.0.0:0 is not a loopback address", e.Message);
        Assert.Contains(BearerToken.EnvironmentVariable, e.Message);
        Assert.False(File.Exists(Path.Combine(runDir, JobControlHost.ControlFile)));
    }

    [Fact]
    public async Task LoopbackWithoutATokenNeedsNoneAndTheEmbeddedPoolIsEmpty()
    {
        using var state = new JobControlState();
        await using var host = await JobControlHost.StartAsync(HostPort.Parse("localhost:0", "--control"), null, state, EmbeddedWorkerPool.Instance, runDir,
            Serilog.Core.Logger.None);
        Assert.False(JobControlClient.ReadControlFile(runDir).TokenRequired);
        var status = await JobControlClient.CallAsync(host.Address, "status", null, Timeout);
        Assert.Empty(status.Workers);
        Assert.Empty(status.QueueDepths);
        var json = JobControlClient.ToJson(status, "status", host.Address);
        Assert.Null(json["last_metrics"]);
        Assert.Null(json["last_checkpoint"]);
    }

    [Fact]
    public void AMissingOrCorruptControlFileIsAClearError()
    {
        var none = Assert.Throws<K2Exception>(() => JobControlClient.ReadControlFile(runDir));
        Assert.Contains($"no control.json in {runDir}: no RL job is running there", none.Message);
        var never = Assert.Throws<K2Exception>(() => JobControlClient.ReadControlFile(Path.Combine(runDir, "absent")));
        Assert.Contains("does not exist: the job was never started there", never.Message);
        foreach (string bad in new[] { "{", "[]", "{\"pid\": 3}", "{\"address\": \"ftp://x\"}", "{\"address\": 7}" })
        {
            File.WriteAllText(Path.Combine(runDir, JobControlHost.ControlFile), bad);
            var e = Assert.Throws<CorruptFileException>(() => JobControlClient.ReadControlFile(runDir));
            Assert.Contains("control.json: not a job-control file", e.Message);
        }
    }

    public void Dispose() => Directory.Delete(runDir, recursive: true);

    private sealed class TwoWorkers : IWorkerPoolStatus
    {
        public Task<WorkerPoolSnapshot> SnapshotAsync(CancellationToken ct) => Task.FromResult(new WorkerPoolSnapshot(
            [new WorkerInfo("w-0", "http://10.0.0.5:7071", 5, TimeSpan.FromSeconds(0.4), true), new WorkerInfo("w-1", "", 4, TimeSpan.FromSeconds(31), false)],
            new Dictionary<string, long> { ["generate"] = 12, ["results"] = 0 }));
    }
}
