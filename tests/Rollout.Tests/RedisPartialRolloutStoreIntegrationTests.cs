using K2RL.Common.Redis;
using K2RL.Tests.Shared;

namespace K2RL.Rollout.Tests;

/// <summary><see cref="RedisPartialRolloutStore"/> against a real redis-server (started by the test, AOF on).</summary>
public sealed class RedisPartialRolloutStoreIntegrationTests : IAsyncLifetime
{
    private readonly RedisServer server = new();
    private RedisConnection redis = null!;

    public async Task InitializeAsync() => redis = await RedisConnection.ConnectAsync(server.Url);

    public async Task DisposeAsync()
    {
        await redis.DisposeAsync();
        server.Dispose();
    }

    [Fact]
    public void PauseAndResumeThroughRedisGivesExactlyTheUninterruptedRun() =>
        PartialRolloutTests.PauseAndResumeGivesTheUninterruptedTokens(() => new HashDecoder(maxBatch: 3), new RedisPartialRolloutStore(redis, "p:"), budget: 19);

    [Fact]
    public async Task PausedRolloutsSurviveARestartAndAMalformedOneIsDeadLettered()
    {
        var store = new RedisPartialRolloutStore(redis, "p:");
        var p = new PartialRollout
        {
            Id = "job/7:ü",
            Prompt = [1, 2, 3],
            Sampling = new SamplingParams { Temperature = 0.7f, MaxTokens = 9, Seed = 5 },
            Tokens = [new(5, -1.2345678f, 0.7f, 3)],
            Seed = 5,
            RngState = 0xDEADBEEFCAFEF00DUL,
            Pauses = 1,
        };
        store.Save(p);
        await redis.Database.HashSetAsync(store.Key, "bad", "{\"format\":\"k2rl.partial_rollout\",\"version\":1}");
        server.Restart();
        await redis.RetryAsync("ping", db => db.PingAsync(), Serilog.Core.Logger.None, TimeSpan.FromSeconds(30), CancellationToken.None);

        Assert.Equal(["bad", "job/7:ü"], store.Ids());
        Assert.True(store.TryLoad("job/7:ü", out var q));
        Assert.Equal(p.Tokens, q!.Tokens);
        Assert.Equal(p.RngState, q.RngState);
        Assert.False(store.TryLoad("bad", out _));
        Assert.Equal(["job/7:ü"], store.Ids());
        var dead = await redis.Database.ListRangeAsync(store.Dead);
        Assert.Contains("malformed partial rollout", (string)dead.Single()!);
        Assert.True(store.Remove("job/7:ü"));
        Assert.Empty(store.Ids());
    }
}
