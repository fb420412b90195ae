using K2RL.Common;
using K2RL.Rollout.Episodes;
using K2RL.Rollout.Workers;

namespace K2RL.Rollout.Tests;

/// <summary>The rollout workers' JSON (work items, results, heartbeats) and the registered address.</summary>
public sealed class RolloutWorkTests
{
    private static RolloutWorkItem Item() => new()
    {
        Id = "e3.c7.it1-arithmetic-5-s1",
        Epoch = 3,
        WeightsVersion = 12,
        Temperature = 0.95f,
        TokenBudget = 40,
        Options = new EpisodeOptions { MaxResponseTokens = 64, MaxTurns = 3, StepTimeout = TimeSpan.FromSeconds(2.5), Seed = ulong.MaxValue, TopP = 0.9f, TopK = 7 },
        Request = new EpisodeRequest("it1-arithmetic-5-s1", "arithmetic", long.MinValue, 2, 1),
    };

    [Fact]
    public void AWorkItemRoundTripsExactly()
    {
        var item = Item();
        var back = RolloutWorkItem.FromJson(item.ToJson(), "test");
        Assert.Equal(item.Request, back.Request);
        Assert.Equal(item.Options, back.Options);
        Assert.Equal((item.Id, item.Epoch, item.WeightsVersion, item.Temperature, item.TokenBudget),
            (back.Id, back.Epoch, back.WeightsVersion, back.Temperature, back.TokenBudget));
        Assert.Null(back.Paused);
    }

    [Theory]
    [InlineData("{not json", "malformed JSON")]
    [InlineData("[1, 2]", "not a JSON object")]
    [InlineData("""{"format":"k2rl.rollout_item","version":2}""", "'format'")]
    [InlineData("""{"format":"k2rl.rollout_item","version":1,"id":"x","epoch":1,"weights_version":0,"temperature":1,"token_budget":0}""", "'options'")]
    public void AMalformedWorkItemIsAnErrorNamingTheField(string json, string expected)
    {
        var e = Assert.Throws<CorruptFileException>(() => RolloutWorkItem.FromJson(json, "redis://h k2rl:items field x"));
        Assert.Contains("redis://h k2rl:items field x", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void AWorkItemWithAZeroTurnCapOrNoEpisodeIsRefused()
    {
        string json = Item().ToJson();
        Assert.Contains("'options.max_turns'", Assert.Throws<CorruptFileException>(() =>
            RolloutWorkItem.FromJson(json.Replace("\"max_turns\":3", "\"max_turns\":0"), "t")).Message);
        Assert.Contains("'request'", Assert.Throws<CorruptFileException>(() =>
            RolloutWorkItem.FromJson(json.Replace("\"request\"", "\"other\""), "t")).Message);
    }

    [Fact]
    public void AMalformedResultIsAnErrorNamingTheField()
    {
        var e = Assert.Throws<CorruptFileException>(() =>
            RolloutWorkResult.FromJson("""{"format":"k2rl.rollout_result","version":1,"id":"x","worker":"w","weights_version":0,"tokens_generated":1,"engine_steps":1}""", "r"));
        Assert.Contains("'trajectory'", e.Message);
    }

    [Fact]
    public void HeartbeatsRoundTripAndForeignEntriesReadAsNone()
    {
        var h = new WorkerHeartbeat { Id = "w1", Address = "http://10.0.0.2:7071/", Epoch = 2, WeightsVersion = 5, ReceivedVersion = 6, ItemsDone = 9, TokensPerSecond = 1.5 };
        Assert.Equal(h, WorkerHeartbeat.FromJson(h.ToJson()));
        Assert.Contains("\"received_version\":6", h.ToJson());
        Assert.Null(WorkerHeartbeat.FromJson("{not json"));
        Assert.Null(WorkerHeartbeat.FromJson("{}"));
    }

    [Fact]
    public void AWildcardBindIsRegisteredUnderTheAdvertisedHost()
    {
        Assert.Equal(new Uri("http://10.1.2.3:7071/"), WorkerSession.Advertised(new Uri("http://0.0.0.0:7071/"), "10.1.2.3"));
        Assert.Equal(new Uri("http://0.0.0.0:7071/"), WorkerSession.Advertised(new Uri("http://0.0.0.0:7071/"), null));
        Assert.Equal(new Uri("http://127.0.0.1:7071/"), WorkerSession.Advertised(new Uri("http://127.0.0.1:7071/"), "10.1.2.3"));
    }
}
