using System.Collections.Concurrent;
using System.Diagnostics;
using K2RL.Common;
using K2RL.Common.Redis;
using K2RL.Gym;
using K2RL.Rollout.Workers;
using K2RL.Tests.Shared;
using K2RL.Trainer.Rl;

namespace K2RL.Cli.Tests;

/// <summary>
/// The RL job with rollout.workers on a real redis-server (started by the test, AOF on) and real k2rl rollout-worker
/// processes (weights through shared memory): without a token budget the run equals the embedded one (metrics line
/// for line, final weights byte for byte, so every sample is counted exactly once), also when a worker is killed -9
/// holding leases, when a result in Redis is garbage, and when redis-server restarts mid-iteration. Malformed items
/// are dead-lettered without a crash; an unreachable Redis is an error naming the URL.
/// </summary>
public sealed class RolloutWorkerIntegrationTests : IDisposable
{
    private readonly RedisServer redis = new();
    private readonly string shm = "k2rl-test-" + Guid.NewGuid().ToString("N")[..8];
    private readonly RlTestJobs jobs;
    private readonly List<Worker> workers = [];

    public RolloutWorkerIntegrationTests()
    {
        jobs = new RlTestJobs(iterations: 2, every: 1, tokenBudget: 0, extra: "", $"workers: {redis.Url}", "transport: shm", $"shm_name: {shm}");
    }

    [Fact]
    public async Task TwoWorkersGiveTheEmbeddedRunAndMalformedItemsAreDeadLettered()
    {
        var w1 = StartWorker("w1", "--metrics", "127.0.0.1:0");
        var w2 = StartWorker("w2", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0");   // shm weights: --listen serves grpc.health.v1 alone
        await using var connection = await RedisConnection.ConnectAsync(redis.Url);
        var queue = new RedisWorkQueue(connection);
        await WaitForAsync(async () => (await queue.WorkersAsync(TimeSpan.FromMinutes(1))).Count == 2, "both workers registered");
        string remote = await RunRemoteAsync();
        await queue.EnqueueAsync([("bad-json", "{not json"), ("bad-format", """{"format":"something.else","version":1}""")]);
        await WaitForAsync(async () => (await queue.DeadLettersAsync()).Count == 2, "the malformed items dead-lettered");
        Assert.False(w1.Process.HasExited || w2.Process.HasExited, "a worker crashed on a malformed item");
        string served = w2.Log.Split('\n').Single(l => l.Contains("serving grpc.health.v1 on "));
        await AssertServingAsync(served[(served.IndexOf("http", StringComparison.Ordinal))..].Trim());

        string embedded = RunEmbedded();
        AssertSameRun(embedded, remote);
        var depths = await queue.DepthsAsync();
        Assert.Equal(new QueueDepths(0, 0, 0, 0, 2), depths);
        // each worker's --metrics endpoint follows its stats (every second): together they count the run's 8 items
        var scrapes = new[] { w1, w2 }.Select(w => w.Log.Split('\n').Single(l => l.Contains("Prometheus metrics on http")))
            .Select(l => new Uri(l[l.IndexOf("http", StringComparison.Ordinal)..].Trim())).ToList();
        await WaitForAsync(() => Task.FromResult(scrapes.Sum(u => PromTool.Sample(PromTool.Scrape(u), "k2rl_worker_items_done_total") ?? 0) == 8),
            "the workers' metrics counted the 8 items");
        PromTool.CheckMetrics(PromTool.Scrape(scrapes[0]));
        var stats = StopWorkers();
        Assert.Equal(2 * 4, stats.Sum(s => s.ItemsDone));   // 2 iterations × 2 prompts × 2 samples, each once
        Assert.Equal(1, stats.Max(s => s.WeightsVersion));   // the last iteration ran at version 1 (a worker that got none of it holds 0)
        Assert.Contains("dead-lettered", w1.Log + w2.Log);
    }

    [Fact]
    public async Task TwoJobsShareOneRedisDatabaseUnderTheirQueueNames()
    {
        using var second = new RlTestJobs(iterations: 2, every: 1, tokenBudget: 0, extra: "", $"workers: {redis.Url}", "transport: shm",
            $"shm_name: {shm}-b", "queue: second");
        StartWorker("other");   // the default queue, k2rl: it must see nothing of the second job
        StartWorker("mine", "--queue", "second");
        await using var connection = await RedisConnection.ConnectAsync(redis.Url);
        var queue = new RedisWorkQueue(connection, "second:");
        await WaitForAsync(async () => (await queue.WorkersAsync(TimeSpan.FromMinutes(1))).Count == 1, "the second queue's worker registered");
        await WaitForAsync(async () => (await new RedisWorkQueue(connection).WorkersAsync(TimeSpan.FromMinutes(1))).Count == 1, "the default queue's worker registered");
        await RunRemoteAsync(second);

        var server = connection.Database.Multiplexer.GetServers().Single();
        var keys = server.Keys(pattern: "*").Select(k => (string)k!).ToList();
        Assert.Contains("second:model", keys);
        Assert.DoesNotContain("k2rl:model", keys);   // the default queue only has its worker's registration
        var stats = StopWorkers();
        Assert.Equal(0, stats.Single(s => s.Id == "other").ItemsDone);
        Assert.Equal(2 * 4, stats.Single(s => s.Id == "mine").ItemsDone);

        var (code, _, err) = await ModelCommandInfoTests.Run("rollout-worker", "--redis", redis.Url, "--queue", "bad name");
        Assert.True(code == 1 && err.Contains("--queue 'bad name'"), err);
    }

    [Fact]
    public async Task AWorkerKilledHoldingLeasesLosesNothingAndAGarbageResultIsRunAgain()
    {
        var doomed = StartWorker("doomed", "--hold-ms", "60000");
        await using var connection = await RedisConnection.ConnectAsync(redis.Url);
        var queue = new RedisWorkQueue(connection);
        await WaitForAsync(async () => (await queue.WorkersAsync(TimeSpan.FromMinutes(1))).Count == 1, "the first worker registered");
        var survivor = StartWorker("survivor");
        await WaitForAsync(async () => (await queue.WorkersAsync(TimeSpan.FromMinutes(1))).Count == 2, "both workers registered");

        var run = Task.Run(RunRemoteAsync);
        var held = await WaitForLeasesAsync(queue, "doomed#");
        await queue.Redis.Database.HashSetAsync(queue.Results, held[0], "{\"format\":\"k2rl.rollout_result\",\"version\":1,\"id\":42}");
        doomed.Process.Kill();   // SIGKILL: its leases are never acknowledged nor renewed
        doomed.Process.WaitForExit();
        string remote = await run;

        AssertSameRun(RunEmbedded(), remote);
        var dead = await queue.DeadLettersAsync();
        Assert.Contains(dead, d => d.Contains("\"kind\":\"result\"") && d.Contains(held[0]));
        var stats = StopWorkers();
        Assert.Equal(2 * 4, stats.Single().ItemsDone);   // the survivor ran every item, the killed worker's included, once each
    }

    [Fact]
    public async Task RedisRestartingMidIterationLosesNothing()
    {
        var w = StartWorker("w1", "--hold-ms", "1500");
        await using var connection = await RedisConnection.ConnectAsync(redis.Url);
        var queue = new RedisWorkQueue(connection);
        await WaitForAsync(async () => (await queue.WorkersAsync(TimeSpan.FromMinutes(1))).Count == 1, "the worker registered");
        var run = Task.Run(RunRemoteAsync);
        await WaitForLeasesAsync(queue, "w1#");
        redis.Stop();   // SIGTERM: the AOF is written; then down for a second, and back on the same port and directory
        await Task.Delay(1000);
        redis.Start();
        string remote = await run;

        AssertSameRun(RunEmbedded(), remote);
        Assert.Equal(new QueueDepths(0, 0, 0, 0, 0), await queue.DepthsAsync());
        var stats = StopWorkers();
        Assert.Equal(2 * 4, stats.Single().ItemsDone);
        Assert.Contains("retry", w.Log);   // the worker saw Redis go and retried with backoff
    }

    [Fact]
    public async Task WithRedisDownTheJobWaitsAndAStopCheckpointsForAnExactResume()
    {
        var registry = GymRegistry.CreateDefault();
        var config = RlJobConfig.Load(jobs.JobPath, registry.Environments.Select(e => e.Name).ToArray(), SyntheticCorpus.CreateDefault().Kinds);
        string dir = jobs.RunDir("outage");
        using (var rl = new RlJob(config, dir, registry))
        {
            redis.Stop();
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(3));   // the job waits for Redis meanwhile, retrying
            var result = await rl.TrainAsync(resume: false, maxIterations: null, stop.Token);
            Assert.Equal(RlStopReason.Interrupted, result.Reason);
            Assert.Equal(0, result.Iteration);
            Assert.NotNull(result.Checkpoint);
        }

        redis.Start();
        StartWorker("after");
        using (var rl = new RlJob(config, dir, registry))
        {
            Assert.Equal(RlStopReason.Completed, (await rl.TrainAsync(resume: true, maxIterations: null, CancellationToken.None)).Reason);
        }

        AssertSameRun(RunEmbedded(), dir);
    }

    [Fact]
    public async Task AWorkerTakingWeightsOverTheNetworkGivesTheEmbeddedRun()
    {
        using var net = new RlTestJobs(iterations: 2, every: 1, tokenBudget: 0, extra: "", $"workers: {redis.Url}", "transport: net");
        var w = StartWorker("n1", "--weights", "net", "--listen", "127.0.0.1:0");
        await using var connection = await RedisConnection.ConnectAsync(redis.Url);
        var queue = new RedisWorkQueue(connection);
        await WaitForAsync(async () => (await queue.WorkersAsync(TimeSpan.FromMinutes(1))).Count == 1, "the worker registered");
        string remote = await RunRemoteAsync(net);
        AssertSameRun(RunEmbedded(), remote);
        var registered = WorkerHeartbeat.FromJson((await queue.WorkersAsync(TimeSpan.FromMinutes(1))).Single().Json)!;
        await AssertServingAsync(registered.Address!);   // the registered address answers grpc.health.v1 beside k2rl.v1.Checkpoint
        var stats = StopWorkers();
        Assert.Equal(2 * 4, stats.Single().ItemsDone);
        Assert.StartsWith("http://127.0.0.1:", stats.Single().Address);
        Assert.Contains("serving k2rl.v1.Checkpoint", w.Log);
    }

    [Fact]
    public async Task WithATokenBudgetPausedEpisodesGoThroughRedisAndAResumeIsExact()
    {
        using var budget = new RlTestJobs(iterations: 4, every: 2, tokenBudget: 20, extra: "", $"workers: {redis.Url}", "transport: shm", $"shm_name: {shm}");
        StartWorker("b1");
        await using var connection = await RedisConnection.ConnectAsync(redis.Url);
        var queue = new RedisWorkQueue(connection);
        await WaitForAsync(async () => (await queue.WorkersAsync(TimeSpan.FromMinutes(1))).Count == 1, "the worker registered");
        var registry = GymRegistry.CreateDefault();
        var config = RlJobConfig.Load(budget.JobPath, registry.Environments.Select(e => e.Name).ToArray(), SyntheticCorpus.CreateDefault().Kinds);
        async Task Train(string dir, bool resume, long? max)
        {
            using var rl = new RlJob(config, dir, registry);   // each start is a new trainer epoch: the queue starts over
            Assert.NotEqual(RlStopReason.TooManyBadSteps, (await rl.TrainAsync(resume, max, CancellationToken.None)).Reason);
        }

        string straight = budget.RunDir("straight"), resumed = budget.RunDir("resumed");
        await Train(straight, resume: false, max: null);
        await Train(resumed, resume: false, max: 2);
        await connection.Database.KeyDeleteAsync(queue.Items);   // Redis losing what it held changes nothing: the run directory is the truth
        await Train(resumed, resume: true, max: null);

        var lines = RlTestJobs.Deterministic(straight);
        Assert.Equal(lines, RlTestJobs.Deterministic(resumed));
        Assert.Contains(lines, l => !l.Contains("\"partial_paused\":0"));
        Assert.Contains(lines, l => !l.Contains("\"partial_resumed\":0"));
    }

    [Fact]
    public async Task AnUnreachableRedisIsAnErrorNamingTheUrl()
    {
        var error = new StringWriter();
        int code = await CliApp.RunAsync(["rollout-worker", "--redis", "redis://127.0.0.1:1", "--weights", "shm"], new CliContext(new StringWriter(), error));
        Assert.Equal(1, code);
        Assert.Contains("redis://127.0.0.1:1", error.ToString());
        Assert.Contains("unreachable", error.ToString());

        var registry = GymRegistry.CreateDefault();
        var config = RlJobConfig.Load(jobs.JobPath, registry.Environments.Select(e => e.Name).ToArray(), SyntheticCorpus.CreateDefault().Kinds) with
        {
            Workers = "redis://127.0.0.1:1/2",
        };
        var e = Assert.ThrowsAny<K2Exception>(() => new RlJob(config, jobs.RunDir("unreachable"), registry));
        Assert.Contains("redis://127.0.0.1:1/2", e.Message);
    }

    [Fact]
    public async Task BenchRlWithWorkersPrintsOneJsonObject()
    {
        var output = new StringWriter();
        int code = await CliApp.RunAsync(["bench", "rl", "--base", jobs.BaseDir, "--iterations", "1", "--prompts", "1", "--samples", "2", "--max-tokens", "4",
            "--workers", "1", "--latency-items", "20", "--json"], new CliContext(output, new StringWriter()));
        Assert.Equal(0, code);
        var o = System.Text.Json.Nodes.JsonNode.Parse(output.ToString())!.AsObject();   // exactly one object
        var run = o["scale_out"]!.AsArray().Single()!;
        Assert.Equal(1, (int)run["workers"]!);
        Assert.True((double)run["samples_per_s"]! > 0);
        Assert.True((double)o["queue_latency_ms"]!["median"]! > 0);
        Assert.True((double)o["queue_latency_ms"]!["p90"]! >= (double)o["queue_latency_ms"]!["median"]!);
        Assert.Equal("everysec", (string)o["queue_latency_ms"]!["appendfsync"]!);   // deploy/'s Redis setting
        Assert.Equal("always", (string)o["queue_latency_ms_fsync_always"]!["appendfsync"]!);
        Assert.True((double)o["queue_latency_ms_fsync_always"]!["median"]! > 0);
    }

    [Theory]
    [InlineData("workers: http://127.0.0.1:6379", "rollout.workers")]
    [InlineData("workers: redis://127.0.0.1:6379/99", "database")]
    [InlineData("transport: carrier-pigeon", "transport")]
    [InlineData("queue: \"k2rl:jobs\"", "rollout.queue")]
    public void ABadRolloutSectionNamesTheLine(string line, string expected)
    {
        using var bad = new RlTestJobs(iterations: 1, every: 1, tokenBudget: 0, extra: "", line);
        var registry = GymRegistry.CreateDefault();
        var e = Assert.Throws<ConfigException>(() =>
            RlJobConfig.Load(bad.JobPath, registry.Environments.Select(x => x.Name).ToArray(), SyntheticCorpus.CreateDefault().Kinds));
        Assert.Contains("job.yaml:", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void ABadShmNameIsRefusedByTheSharedMemoryFilesOwnRule()
    {
        using var bad = new RlTestJobs(iterations: 1, every: 1, tokenBudget: 0, extra: "", "workers: redis://127.0.0.1:6379", "shm_name: \"a/b\"");
        var registry = GymRegistry.CreateDefault();
        var e = Assert.Throws<ConfigException>(() =>
            RlJobConfig.Load(bad.JobPath, registry.Environments.Select(x => x.Name).ToArray(), SyntheticCorpus.CreateDefault().Kinds));
        Assert.Contains("job.yaml:", e.Message);
        Assert.Contains("\"rollout.shm_name\": shared-memory name 'a/b' must be 1-100 letters", e.Message);
    }

    private static async Task AssertServingAsync(string address)
    {
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(address);
        var reply = await new Grpc.Health.V1.Health.HealthClient(channel).CheckAsync(new Grpc.Health.V1.HealthCheckRequest());
        Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, reply.Status);
    }

    private Task<string> RunRemoteAsync() => RunRemoteAsync(jobs);

    private static async Task<string> RunRemoteAsync(RlTestJobs job)
    {
        string dir = job.RunDir("remote-" + Guid.NewGuid().ToString("N")[..6]);
        var registry = GymRegistry.CreateDefault();
        var config = RlJobConfig.Load(job.JobPath, registry.Environments.Select(e => e.Name).ToArray(), SyntheticCorpus.CreateDefault().Kinds);
        var (result, _) = await RlLearningTests.RunInProcess(config, dir, registry);
        Assert.Equal(RlStopReason.Completed, result.Reason);
        return dir;
    }

    private string RunEmbedded()
    {
        string dir = jobs.RunDir("embedded");
        if (!Directory.Exists(dir))
        {
            var registry = GymRegistry.CreateDefault();
            var config = RlJobConfig.Load(jobs.JobPath, registry.Environments.Select(e => e.Name).ToArray(), SyntheticCorpus.CreateDefault().Kinds) with
            {
                Workers = null,
            };
            var (result, _) = RlLearningTests.RunInProcess(config, dir, registry).GetAwaiter().GetResult();
            Assert.Equal(RlStopReason.Completed, result.Reason);
        }

        return dir;
    }

    /// <summary>The same metrics (timings aside) and the same final weights, byte for byte.</summary>
    private static void AssertSameRun(string expected, string actual)
    {
        Assert.Equal(RlTestJobs.Deterministic(expected), RlTestJobs.Deterministic(actual));
        static byte[] Weights(string run) => File.ReadAllBytes(Path.Combine(run, "checkpoints", "step-2", "model.safetensors"));
        Assert.True(Weights(expected).AsSpan().SequenceEqual(Weights(actual)), "the final weights differ");
    }

    private static async Task<List<string>> WaitForLeasesAsync(RedisWorkQueue queue, string tokenPrefix)
    {
        List<string> held = [];
        await WaitForAsync(async () =>
        {
            held = (await queue.Redis.Database.HashGetAllAsync(queue.Owners)).Where(e => ((string)e.Value!).StartsWith(tokenPrefix, StringComparison.Ordinal))
                .Select(e => (string)e.Name!).ToList();
            return held.Count > 0;
        }, $"leases held by {tokenPrefix}");
        return held;
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(5);
        }
    }

    private Worker StartWorker(string id, params string[] extra)
    {
        var w = Worker.Start(["rollout-worker", "--redis", redis.Url, "--id", id, "--lease-s", "1", "--json", .. extra]);
        workers.Add(w);
        return w;
    }

    /// <summary>SIGTERMs the live workers; their --json stats.</summary>
    private List<WorkerHeartbeat> StopWorkers()
    {
        var stats = new List<WorkerHeartbeat>();
        foreach (var w in workers.Where(w => !w.Process.HasExited))
        {
            Process.Start("kill", ["-TERM", w.Process.Id.ToString()])!.WaitForExit();
            string stdout = w.Process.StandardOutput.ReadToEnd();
            Assert.True(w.Process.WaitForExit(TimeSpan.FromMinutes(1)), "a worker did not stop on SIGTERM");
            Assert.True(w.Process.ExitCode == 0, $"worker exit code {w.Process.ExitCode}: {w.Log}");
            stats.Add(WorkerHeartbeat.FromJson(stdout.Trim()) ?? throw new InvalidOperationException($"not the worker's stats: {stdout}"));
        }

        return stats;
    }

    public void Dispose()
    {
        foreach (var w in workers)
        {
            if (!w.Process.HasExited)
            {
                w.Process.Kill();
                w.Process.WaitForExit();
            }

            w.Process.Dispose();
        }

        jobs.Dispose();
        redis.Dispose();
        K2RL.CheckpointEngine.SharedMemoryWeightPublisher.Delete(shm);
    }

    /// <summary>A k2rl child process whose stderr is kept.</summary>
    private sealed class Worker
    {
        private readonly ConcurrentQueue<string> lines;

        private Worker(Process process, ConcurrentQueue<string> lines) => (Process, this.lines) = (process, lines);

        public Process Process { get; }

        public string Log => string.Join("\n", lines);

        public static Worker Start(string[] args)
        {
            var lines = new ConcurrentQueue<string>();
            return new Worker(ChildK2rl.Start(args, lines.Enqueue), lines);
        }
    }
}
