using System.Text.Json;
using K2RL.Gym;
using K2RL.Gym.Critic;
using K2RL.Tests.Shared.Gym;

namespace K2RL.Gym.Tests;

/// <summary>The HTTP judge against a real local HTTP server (<see cref="ChatCompletionsServer"/>) started by the test.</summary>
public sealed class HttpJudgeTests : IDisposable
{
    private readonly ChatCompletionsServer server = new(Answer);
    private readonly Uri endpoint;

    public HttpJudgeTests()
    {
        endpoint = server.Endpoint();
    }

    private static ChatReply Answer(ChatRequest request)
    {
        var (a, b) = CriticProtocol.ResponsesOf(request.Prompt);
        if (a.Contains("FAIL") || b.Contains("FAIL"))
        {
            return new ChatReply(500, "oops");
        }

        if (a.Contains("GARBAGE") || b.Contains("GARBAGE"))
        {
            return new ChatReply(200, "{\"not\": \"openai\"");
        }

        if (a.Contains("HANG") || b.Contains("HANG"))
        {
            return new ChatReply(200, "{}", TimeSpan.FromSeconds(60)); // far past any bound below: only the client's timeout ends it
        }

        return ChatReply.Content(a.Length >= b.Length ? "Verdict: [[A]]" : "Verdict: [[B]]");
    }

    [Fact]
    public async Task JudgesThroughAnOpenAiCompatibleEndpoint()
    {
        using var judge = new HttpJudge(endpoint, model: "critic-1");
        var scores = await new CriticProtocol(judge, [new Rubric { Name = "c", Description = "d" }])
            .ScoreAsync("q", ["a", "bbb", "cc"]);
        Assert.Equal(0, scores.Unparseable);
        Assert.Equal([0.0, 1.0, 0.5], scores.WinRate);
        Assert.All(server.Requests, r => Assert.Equal("critic-1", r.Model));
        Assert.All(server.Requests, r => Assert.Equal(0, JsonDocument.Parse(r.Body).RootElement.GetProperty("temperature").GetInt32()));
    }

    [Fact]
    public async Task ServerErrorsBadJsonAndTimeoutsAreCountedAsUnparseable()
    {
        using var judge = new HttpJudge(endpoint, timeout: TimeSpan.FromMilliseconds(500));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var scores = await new CriticProtocol(judge, [], new CriticOptions { BothOrders = false })
            .ScoreAsync("q", ["fine", "FAIL", "GARBAGE", "HANG"]);
        // Three comparisons hang for 60 s each; finishing under 30 s means the 500 ms timeout ended them (a
        // bound generous enough for a loaded shared machine, yet far below one unanswered hang).
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), watch.Elapsed.ToString());
        Assert.Equal(6, scores.Comparisons);
        Assert.Equal(6, scores.Unparseable);
        Assert.Equal(6, judge.Failures);
        Assert.NotNull(judge.LastError);
    }

    [Fact]
    public async Task AnEndpointNobodyListensOnFailsEveryPrompt()
    {
        using var judge = new HttpJudge(new Uri($"http://127.0.0.1:{ChatCompletionsServer.FreePort()}/v1/chat/completions"));
        var verdicts = await judge.JudgeAsync(["a", "b"]);
        Assert.All(verdicts, Assert.Null);
        Assert.Equal(2, judge.Failures);
    }

    public void Dispose() => server.Dispose();
}
