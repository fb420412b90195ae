using System.Diagnostics;
using K2RL.Common;
using K2RL.Gym.Critic;
using K2RL.Tests.Shared.Gym;

namespace K2RL.Gym.Tests;

/// <summary>
/// <see cref="HttpJudge"/> against a real local OpenAI-compatible server (<see cref="ChatCompletionsServer"/>) that the
/// test controls: retries with backoff, the concurrency limit, timeouts, garbage, HTTP errors, the API key.
/// </summary>
public sealed class HttpJudgeIntegrationTests : IDisposable
{
    private readonly Dictionary<string, int> calls = [];
    private readonly ChatCompletionsServer server;

    public HttpJudgeIntegrationTests()
    {
        server = new ChatCompletionsServer(Answer);
    }

    /// <summary>The prompt says what to do: "ok", "flaky-N" (HTTP 503 N times, then a verdict), "e500", "e401", "garbage", "hang", "slow".</summary>
    private ChatReply Answer(ChatRequest r)
    {
        int n;
        lock (calls)
        {
            calls[r.Prompt] = n = calls.GetValueOrDefault(r.Prompt) + 1;
        }

        return r.Prompt switch
        {
            var p when p.StartsWith("flaky-", StringComparison.Ordinal) => n <= int.Parse(p["flaky-".Length..])
                ? new ChatReply(503, "busy")
                : ChatReply.Content("fine\nVerdict: [[B]]"),
            "e500" => new ChatReply(500, "oops"),
            "e401" => new ChatReply(401, "{\"error\": \"bad key\"}"),
            "garbage" => new ChatReply(200, "<html>not json"),
            "no-content" => new ChatReply(200, "{\"choices\": []}"),
            "hang" => new ChatReply(200, "{}", TimeSpan.FromSeconds(60)),
            "slow" => ChatReply.Content("Verdict: [[A]]") with { Delay = TimeSpan.FromMilliseconds(150) },
            _ => ChatReply.Content("Verdict: [[A]]"),
        };
    }

    private HttpJudge Judge(HttpJudgeOptions? options = null) =>
        new(server.Endpoint(), options ?? new HttpJudgeOptions { RetryBackoff = TimeSpan.FromMilliseconds(10), Timeout = TimeSpan.FromSeconds(20) });

    [Fact]
    public async Task ATransientErrorIsRetriedUntilItSucceeds()
    {
        using var judge = Judge();
        var answers = await judge.AnswerAsync(["flaky-2"]);
        Assert.Equal("fine\nVerdict: [[B]]", answers[0].Text);
        Assert.Null(answers[0].Failure);
        Assert.Equal(3, judge.Attempts);
        Assert.Equal(0, judge.Failures);
    }

    [Fact]
    public async Task RetriesRunOutIntoAFailureWithTheReason()
    {
        using var judge = Judge(new HttpJudgeOptions { Retries = 1, RetryBackoff = TimeSpan.FromMilliseconds(10) });
        var answers = await judge.AnswerAsync(["flaky-5", "e500"]);
        Assert.All(answers, a => Assert.Null(a.Text));
        Assert.Equal($"HTTP 503 from {server.Endpoint()} (2 attempts)", answers[0].Failure);
        Assert.Equal($"HTTP 500 from {server.Endpoint()} (2 attempts)", answers[1].Failure);
        Assert.Equal(4, judge.Attempts);
        Assert.Equal(2, judge.Failures);
    }

    [Fact]
    public async Task BackoffDoublesBetweenAttempts()
    {
        using var judge = Judge(new HttpJudgeOptions { Retries = 3, RetryBackoff = TimeSpan.FromMilliseconds(200) });
        var watch = Stopwatch.StartNew();
        var answers = await judge.AnswerAsync(["e500"]);
        // waits of 200 + 400 + 800 ms between the 4 attempts: at least 1.4 s, whatever the machine's load
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(1400), watch.Elapsed.ToString());
        Assert.Equal(4, judge.Attempts);
        Assert.EndsWith("(4 attempts)", answers[0].Failure);
    }

    [Fact]
    public async Task ClientErrorsGarbageAndMissingContentAreNotRetried()
    {
        using var judge = Judge();
        var answers = await judge.AnswerAsync(["e401", "garbage", "no-content"]);
        Assert.Equal($"HTTP 401 from {server.Endpoint()}", answers[0].Failure);
        Assert.StartsWith($"{server.Endpoint()}: the reply is not an OpenAI chat completion", answers[1].Failure);
        Assert.Equal($"{server.Endpoint()}: the reply has no choices[0].message.content", answers[2].Failure);
        Assert.Equal(3, judge.Attempts);
    }

    [Fact]
    public async Task AHangingEndpointTimesOutEveryAttempt()
    {
        using var judge = Judge(new HttpJudgeOptions { Timeout = TimeSpan.FromMilliseconds(300), Retries = 1, RetryBackoff = TimeSpan.Zero });
        var watch = Stopwatch.StartNew();
        var answers = await judge.AnswerAsync(["hang"]);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), watch.Elapsed.ToString());   // far below one 60 s hang
        Assert.Equal($"timed out after 0.3 s waiting for {server.Endpoint()} (2 attempts)", answers[0].Failure);
        Assert.Equal(2, judge.Attempts);
    }

    [Fact]
    public async Task NoMoreRequestsAreInFlightThanTheLimit()
    {
        using var judge = Judge(new HttpJudgeOptions { MaxConcurrency = 2 });
        var answers = await judge.AnswerAsync(Enumerable.Repeat("slow", 10).ToList());
        Assert.All(answers, a => Assert.Equal("Verdict: [[A]]", a.Text));
        Assert.InRange(server.MaxInFlight, 1, 2);
    }

    [Fact]
    public async Task TheApiKeyComesFromTheNamedVariableAndIsNeverInAMessage()
    {
        string variable = "K2RL_TEST_JUDGE_KEY_" + Guid.NewGuid().ToString("N");
        string key = "sk-test-" + Guid.NewGuid().ToString("N");
        Environment.SetEnvironmentVariable(variable, key);
        try
        {
            using var judge = Judge(new HttpJudgeOptions { ApiKeyEnv = variable, Retries = 0 });
            var answers = await judge.AnswerAsync(["ok", "e401", "garbage"]);
            Assert.Equal("Verdict: [[A]]", answers[0].Text);
            Assert.All(server.Requests, r => Assert.Equal("Bearer " + key, r.Authorization));
            Assert.All(answers, a => Assert.DoesNotContain(key, a.Failure ?? ""));
            Assert.DoesNotContain(key, judge.LastError);
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }
    }

    [Fact]
    public void AnUnsetKeyVariableIsAConfigErrorNamingTheVariable()
    {
        var e = Assert.Throws<ConfigException>(() => Judge(new HttpJudgeOptions { ApiKeyEnv = "K2RL_TEST_SURELY_UNSET_VARIABLE" }));
        Assert.Contains("'K2RL_TEST_SURELY_UNSET_VARIABLE' is not set", e.Message);
    }

    [Fact]
    public async Task MessagesNameTheEndpointWithoutUserInfoOrQuery()
    {
        var withSecrets = new UriBuilder($"http://127.0.0.1:{ChatCompletionsServer.FreePort()}/v1/chat/completions")
        {
            UserName = "user", Password = "hunter2", Query = "api-key=topsecret",
        }.Uri;
        using var judge = new HttpJudge(withSecrets, new HttpJudgeOptions { Retries = 0 });
        var answers = await judge.AnswerAsync(["x"]);
        Assert.StartsWith($"http://127.0.0.1:{withSecrets.Port}/v1/chat/completions: ", answers[0].Failure);
        Assert.DoesNotContain("hunter2", answers[0].Failure);
        Assert.DoesNotContain("topsecret", answers[0].Failure);
    }

    [Fact]
    public void BadOptionsAndNonHttpUrlsAreRefused()
    {
        Assert.Throws<ConfigException>(() => new HttpJudge(new Uri("ftp://127.0.0.1/x"), new HttpJudgeOptions()));
        Assert.Throws<ConfigException>(() => new HttpJudge(server.Endpoint(), new HttpJudgeOptions { MaxConcurrency = 0 }));
        Assert.Throws<ConfigException>(() => new HttpJudge(server.Endpoint(), new HttpJudgeOptions { Retries = -1 }));
    }

    [Fact]
    public async Task TheDefaultAnswerOfAJudgeSaysItGaveNone()
    {
        IJudge judge = new ScriptedJudge(p => p == "a" ? "Verdict: [[A]]" : null);
        var answers = await judge.AnswerAsync(["a", "b"]);
        Assert.Equal(new JudgeAnswer("Verdict: [[A]]", null), answers[0]);
        Assert.Equal(new JudgeAnswer(null, "judge 'scripted' gave no answer"), answers[1]);
    }

    public void Dispose() => server.Dispose();
}
