using K2RL.Common;
using K2RL.Common.Redis;
using K2RL.Tests.Shared;

namespace K2RL.Common.Tests;

/// <summary>The lease protocol of <see cref="RedisWorkQueue"/> against a real redis-server (started by the test, AOF on).</summary>
public sealed class RedisWorkQueueIntegrationTests : IAsyncLifetime
{
    private static readonly TimeSpan Live = TimeSpan.FromSeconds(3);
    private readonly RedisServer server = new();
    private RedisConnection redis = null!;
    private RedisWorkQueue queue = null!;

    public async Task InitializeAsync()
    {
        redis = await RedisConnection.ConnectAsync(server.Url);
        queue = new RedisWorkQueue(redis, "t:");
    }

    public async Task DisposeAsync()
    {
        await redis.DisposeAsync();
        server.Dispose();
    }

    [Fact]
    public async Task LeasedItemsAreAcknowledgedOnceAndTheFirstResultWins()
    {
        await queue.EnqueueAsync([("a", "A"), ("b", "B"), ("c", "C")]);
        var (leases, requeued) = await queue.LeaseAsync("w1", TimeSpan.FromSeconds(30), 10, Live);
        Assert.Equal(0, requeued);
        Assert.Equal(["a", "b", "c"], leases.Select(l => l.Id));
        Assert.Equal(["A", "B", "C"], leases.Select(l => l.Payload));
        Assert.Equal(3, leases.Select(l => l.Token).Distinct().Count());
        Assert.Empty((await queue.LeaseAsync("w2", TimeSpan.FromSeconds(30), 10, Live)).Leases);   // nothing left to lease

        Assert.Equal(AckOutcome.Accepted, await queue.AckAsync(leases[0], "ra"));
        Assert.Equal(AckOutcome.Duplicate, await queue.AckAsync(leases[0], "again"));
        Assert.Equal(AckOutcome.Refused, await queue.AckAsync(leases[1] with { Token = "w2#999" }, "forged"));
        Assert.Equal(AckOutcome.Accepted, await queue.AckAsync(leases[1], "rb"));

        var states = await queue.CollectAsync(["a", "b", "c", "zz"]);
        Assert.Equal([ItemState.Done, ItemState.Done, ItemState.Waiting, ItemState.Gone], states.Select(s => s.State));
        Assert.Equal(["ra", "rb", null, null], states.Select(s => s.Result));
        await queue.TakeAsync(["a", "b"]);
        Assert.Equal(new QueueDepths(0, 1, 0, 1, 0), await queue.DepthsAsync());
    }

    [Fact]
    public async Task AnExpiredLeaseIsRequeuedAndItsLateAcknowledgementRefused()
    {
        await queue.EnqueueAsync([("a", "A")]);
        var first = (await queue.LeaseAsync("w1", TimeSpan.FromMilliseconds(100), 10, Live)).Leases.Single();
        await Task.Delay(300);
        var (leases, requeued) = await queue.LeaseAsync("w2", TimeSpan.FromSeconds(30), 10, Live);
        Assert.Equal(1, requeued);
        var second = leases.Single();
        Assert.Equal("a", second.Id);
        Assert.NotEqual(first.Token, second.Token);

        Assert.Equal(AckOutcome.Refused, await queue.AckAsync(first, "late"));
        Assert.False((await queue.RenewAsync([first], TimeSpan.FromSeconds(30))).Single());
        Assert.Equal(AckOutcome.Accepted, await queue.AckAsync(second, "on time"));
        Assert.Equal(AckOutcome.Duplicate, await queue.AckAsync(first, "late"));
        Assert.Equal("on time", (await queue.CollectAsync(["a"])).Single().Result);
    }

    [Fact]
    public async Task RenewingKeepsALeaseAndCollectRequeuesExpiredOnes()
    {
        await queue.EnqueueAsync([("a", "A"), ("b", "B")]);
        var lease = TimeSpan.FromSeconds(2);
        var leases = (await queue.LeaseAsync("w1", lease, 10, Live)).Leases;
        var started = DateTime.UtcNow;
        while (DateTime.UtcNow - started < lease + TimeSpan.FromMilliseconds(500))
        {
            await Task.Delay(250);
            Assert.True((await queue.RenewAsync([leases[0]], lease)).Single());   // only a is renewed
        }

        Assert.Equal([ItemState.Waiting, ItemState.Waiting], (await queue.CollectAsync(["a", "b"])).Select(s => s.State));
        var again = (await queue.LeaseAsync("w2", TimeSpan.FromSeconds(30), 10, Live)).Leases;
        Assert.Equal(["b"], again.Select(l => l.Id));   // b expired (requeued by the collect), a is still w1's
        Assert.Equal(AckOutcome.Accepted, await queue.AckAsync(leases[0], "ra"));
    }

    [Fact]
    public async Task EachLiveWorkerLeasesAFairShare()
    {
        await queue.HeartbeatAsync("w1", "{}");
        await queue.HeartbeatAsync("w2", "{}");
        await queue.EnqueueAsync(Enumerable.Range(0, 8).Select(i => ($"i{i}", "x")).ToList());
        Assert.Equal(4, (await queue.LeaseAsync("w1", TimeSpan.FromSeconds(30), 64, Live)).Leases.Count);
        Assert.Equal(2, (await queue.LeaseAsync("w2", TimeSpan.FromSeconds(30), 64, Live)).Leases.Count);
        Assert.Single((await queue.LeaseAsync("w2", TimeSpan.FromSeconds(30), 1, Live)).Leases);   // the batch cap
        var workers = await queue.WorkersAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(["w1", "w2"], workers.Select(w => w.Id).Order());
        Assert.All(workers, w => Assert.InRange(w.HeartbeatAge, TimeSpan.Zero, TimeSpan.FromMinutes(1)));
        await queue.ForgetWorkerAsync("w1");
        Assert.Equal(["w2"], (await queue.WorkersAsync(TimeSpan.FromMinutes(1))).Select(w => w.Id));
    }

    [Fact]
    public async Task AMalformedItemIsDeadLetteredAndAMalformedResultRunsAgain()
    {
        await queue.EnqueueAsync([("bad", "{not json"), ("good", "G")]);
        var leases = (await queue.LeaseAsync("w1", TimeSpan.FromSeconds(30), 10, Live)).Leases;
        Assert.True(await queue.DeadLetterAsync(leases[0], "malformed JSON"));
        Assert.False(await queue.DeadLetterAsync(leases[0], "twice"));
        Assert.Equal(ItemState.Gone, (await queue.CollectAsync(["bad"])).Single().State);

        Assert.Equal(AckOutcome.Accepted, await queue.AckAsync(leases[1], "garbage"));
        await queue.RejectResultAsync("good", "garbage", "unreadable result");
        Assert.Equal(ItemState.Waiting, (await queue.CollectAsync(["good"])).Single().State);
        var rerun = (await queue.LeaseAsync("w2", TimeSpan.FromSeconds(30), 10, Live)).Leases.Single();
        Assert.Equal(("good", "G"), (rerun.Id, rerun.Payload));
        Assert.Equal(AckOutcome.Accepted, await queue.AckAsync(rerun, "fine"));

        var dead = await queue.DeadLettersAsync();
        Assert.Equal(2, dead.Count);
        Assert.Contains("\"kind\":\"item\"", dead[0]);
        Assert.Contains("malformed JSON", dead[0]);
        Assert.Contains("{not json", dead[0]);
        Assert.Contains("\"kind\":\"result\"", dead[1]);
    }

    [Fact]
    public async Task LeasesAndResultsSurviveARestartWithTheAppendOnlyFile()
    {
        await queue.EnqueueAsync([("a", "A"), ("b", "B")]);
        var lease = (await queue.LeaseAsync("w1", TimeSpan.FromMinutes(1), 1, Live)).Leases.Single();
        Assert.Equal(AckOutcome.Accepted, await queue.AckAsync(lease, "ra"));
        var second = (await queue.LeaseAsync("w1", TimeSpan.FromMinutes(1), 1, Live)).Leases.Single();

        server.Restart();
        var log = new Serilog.LoggerConfiguration().CreateLogger();
        var outcome = await redis.RetryAsync("ack", _ => queue.AckAsync(second, "rb"), log, TimeSpan.FromSeconds(30), CancellationToken.None);
        Assert.Equal(AckOutcome.Accepted, outcome);
        var states = await queue.CollectAsync(["a", "b"]);
        Assert.Equal(["ra", "rb"], states.Select(s => s.Result));
    }

    [Fact]
    public async Task AnUnreachableServerOrABadUrlIsAnErrorNamingTheUrl()
    {
        var e = await Assert.ThrowsAsync<K2Exception>(() => RedisConnection.ConnectAsync("redis://127.0.0.1:1/3", TimeSpan.FromSeconds(1)));
        Assert.Contains("redis://127.0.0.1:1/3", e.Message);
        Assert.Contains("unreachable", e.Message);
        foreach (string bad in new[] { "http://127.0.0.1:6379", "redis://127.0.0.1:6379/16", "redis://u:p@127.0.0.1", "not a url" })
        {
            Assert.Contains(bad, Assert.Throws<ConfigException>(() => RedisConnection.Parse(bad)).Message);
        }

        Assert.Equal(("localhost", 6379, 0), RedisConnection.Parse("redis://localhost"));
        Assert.Equal(("10.0.0.2", 7000, 5), RedisConnection.Parse("redis://10.0.0.2:7000/5"));
    }

    [Fact]
    public async Task TheServerRunsWithTheFsyncPolicyAsked()
    {
        Assert.Equal("always", await ConfigGet(server.Url, "appendfsync"));
        using (var everysec = new RedisServerProcess(ExternalTools.Require("redis-server", "redis-server"), appendFsync: "everysec"))
        {
            Assert.Equal("everysec", await ConfigGet(everysec.Url, "appendfsync"));
            Assert.Equal("yes", await ConfigGet(everysec.Url, "appendonly"));
        }

        Assert.Contains("'sometimes'", Assert.Throws<ArgumentException>(() => new RedisServerProcess("redis-server", appendFsync: "sometimes")).Message);
    }

    [Fact]
    public async Task AServerWithAPasswordTakesTheRightOneAndRefusesNoneOrAWrongOneByName()
    {
        using var locked = new RedisServerProcess(ExternalTools.Require("redis-server", "redis-server"), password: "s3cret pass");
        await using (var ok = await RedisConnection.ConnectAsync(locked.Url, password: "s3cret pass"))
        {
            var q = new RedisWorkQueue(ok, "pw:");
            await q.EnqueueAsync([("a", "A")]);
            Assert.Equal("a", (await q.LeaseAsync("w", TimeSpan.FromSeconds(30), 1, Live)).Leases.Single().Id);
        }

        if (Environment.GetEnvironmentVariable(RedisConnection.PasswordVariable) is null)
        {
            var none = await Assert.ThrowsAsync<K2Exception>(() => RedisConnection.ConnectAsync(locked.Url, TimeSpan.FromSeconds(3)));
            Assert.Contains(locked.Url, none.Message);
            Assert.Contains($"requires a password and none was given (set {RedisConnection.PasswordVariable})", none.Message);
        }

        var wrong = await Assert.ThrowsAsync<K2Exception>(() => RedisConnection.ConnectAsync(locked.Url, TimeSpan.FromSeconds(3), "not it"));
        Assert.Contains(locked.Url, wrong.Message);
        Assert.Contains("password", wrong.Message);
        Assert.DoesNotContain("not it", wrong.Message);   // a password is never echoed
    }

    /// <summary>CONFIG GET through redis-cli (the client library refuses admin commands unless told otherwise).</summary>
    private static async Task<string> ConfigGet(string url, string key)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(ExternalTools.Require("redis-cli", "redis-tools"), ["-p", new Uri(url).Port.ToString(), "config", "get", key])
        {
            RedirectStandardOutput = true,
        };
        using var p = System.Diagnostics.Process.Start(psi)!;
        string output = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        return output.Split('\n')[1].Trim();
    }
}
