using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using K2RL.Gym;
using K2RL.Gym.Critic;

namespace K2RL.Gym.Tests;

/// <summary>The HTTP judge against a real local HTTP server (System.Net.HttpListener) started by the test.</summary>
public sealed class HttpJudgeTests : IDisposable
{
    private readonly HttpListener listener = new();
    private readonly Uri endpoint;
    private readonly CancellationTokenSource stop = new();
    private readonly List<string> bodies = [];

    public HttpJudgeTests()
    {
        int port = FreePort();
        endpoint = new Uri($"http://127.0.0.1:{port}/v1/chat/completions");
        listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        listener.Start();
        _ = Task.Run(ServeAsync);
    }

    private async Task ServeAsync()
    {
        while (!stop.IsCancellationRequested)
        {
            HttpListenerContext ctx;
            try
            {
                ctx = await listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            _ = Task.Run(async () =>
            {
                string body = await new StreamReader(ctx.Request.InputStream).ReadToEndAsync();
                lock (bodies)
                {
                    bodies.Add(body);
                }

                string prompt = JsonDocument.Parse(body).RootElement.GetProperty("messages")[0].GetProperty("content").GetString()!;
                var (a, b) = CriticProtocol.ResponsesOf(prompt);
                string reply;
                if (a.Contains("FAIL") || b.Contains("FAIL"))
                {
                    ctx.Response.StatusCode = 500;
                    reply = "oops";
                }
                else if (a.Contains("GARBAGE") || b.Contains("GARBAGE"))
                {
                    reply = "{\"not\": \"openai\"";
                }
                else if (a.Contains("HANG") || b.Contains("HANG"))
                {
                    await Task.Delay(TimeSpan.FromSeconds(60)); // far past any bound below: only the client's timeout ends it
                    reply = "{}";
                }
                else
                {
                    string verdict = a.Length >= b.Length ? "Verdict: [[A]]" : "Verdict: [[B]]";
                    reply = JsonSerializer.Serialize(new { choices = new[] { new { message = new { role = "assistant", content = verdict } } } });
                }

                byte[] bytes = Encoding.UTF8.GetBytes(reply);
                ctx.Response.ContentType = "application/json";
                try
                {
                    await ctx.Response.OutputStream.WriteAsync(bytes);
                    ctx.Response.Close();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
                {
                }
            });
        }
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    [Fact]
    public async Task JudgesThroughAnOpenAiCompatibleEndpoint()
    {
        using var judge = new HttpJudge(endpoint, model: "critic-1");
        var scores = await new CriticProtocol(judge, [new Rubric { Name = "c", Description = "d" }])
            .ScoreAsync("q", ["a", "bbb", "cc"]);
        Assert.Equal(0, scores.Unparseable);
        Assert.Equal([0.0, 1.0, 0.5], scores.WinRate);
        using var doc = JsonDocument.Parse(bodies[0]);
        Assert.Equal("critic-1", doc.RootElement.GetProperty("model").GetString());
        Assert.Equal(0, doc.RootElement.GetProperty("temperature").GetInt32());
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
        using var judge = new HttpJudge(new Uri($"http://127.0.0.1:{FreePort()}/v1/chat/completions"));
        var verdicts = await judge.JudgeAsync(["a", "b"]);
        Assert.All(verdicts, Assert.Null);
        Assert.Equal(2, judge.Failures);
    }

    public void Dispose()
    {
        stop.Cancel();
        listener.Close();
    }
}
