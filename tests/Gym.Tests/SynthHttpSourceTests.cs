using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using K2RL.Common;
using K2RL.Gym.Synthesis;

namespace K2RL.Gym.Tests;

/// <summary>
/// The <c>http</c> trajectory source against a real local HTTP server (System.Net.HttpListener) that speaks the
/// OpenAI chat-completions layout: it solves arithmetic, plays tool_use through tool calls (lookups, then the
/// calculator, then the answer), and fails countdown requests with HTTP 500.
/// </summary>
public sealed partial class SynthHttpSourceTests : IDisposable
{
    private readonly HttpListener listener = new();
    private readonly Uri endpoint;
    private readonly List<(JsonNode Body, string? Auth)> seen = [];
    private readonly string dir = Path.Combine(Path.GetTempPath(), "k2rl-synthhttp-" + Guid.NewGuid().ToString("N"));

    public SynthHttpSourceTests()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        endpoint = new Uri($"http://127.0.0.1:{port}/v1/chat/completions");
        listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        listener.Start();
        _ = Task.Run(ServeAsync);
    }

    public void Dispose()
    {
        listener.Close();
        if (Directory.Exists(dir))
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private async Task ServeAsync()
    {
        while (true)
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

            var body = JsonNode.Parse(await new StreamReader(ctx.Request.InputStream).ReadToEndAsync())!;
            lock (seen)
            {
                seen.Add((body, ctx.Request.Headers["Authorization"]));
            }

            var reply = Reply(body);
            ctx.Response.StatusCode = reply is null ? 500 : 200;
            byte[] bytes = Encoding.UTF8.GetBytes(reply is null ? "oops" : new JsonObject
            {
                ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["message"] = reply }),
            }.ToJsonString());
            await ctx.Response.OutputStream.WriteAsync(bytes);
            ctx.Response.Close();
        }
    }

    [GeneratedRegex(@"What is (\d+) ([-+*]) (\d+)\?")]
    private static partial Regex Arithmetic();

    [GeneratedRegex(@"(\d+) ([a-z]+)")]
    private static partial Regex Item();

    /// <summary>The assistant message the fake model answers with; null: fail with HTTP 500.</summary>
    private static JsonObject? Reply(JsonNode body)
    {
        var messages = body["messages"]!.AsArray();
        string prompt = messages.First(m => m!["role"]!.GetValue<string>() == "user")!["content"]!.GetValue<string>();
        if (Arithmetic().Match(prompt) is { Success: true } a)
        {
            long x = long.Parse(a.Groups[1].Value, CultureInfo.InvariantCulture), y = long.Parse(a.Groups[3].Value, CultureInfo.InvariantCulture);
            long r = a.Groups[2].Value switch { "+" => x + y, "-" => x - y, _ => x * y };
            return new JsonObject { ["role"] = "assistant", ["content"] = $"Answer: {r}" };
        }

        if (body["tools"] is null)
        {
            return null;
        }

        var results = messages.Where(m => m!["role"]!.GetValue<string>() == "tool").Select(m => m!["content"]!.GetValue<string>()).ToList();
        var items = Item().Matches(prompt).Select(m => (Qty: m.Groups[1].Value, Name: m.Groups[2].Value)).ToList();
        if (results.Count == 0)
        {
            return Calls(items.Select(i => ("lookup", new JsonObject { ["key"] = i.Name })));
        }

        if (results.Count == items.Count)
        {
            string expression = string.Join(" + ", items.Select((i, k) => $"{i.Qty} * {results[k]}"));
            return Calls([("calculator", new JsonObject { ["expression"] = expression })]);
        }

        return new JsonObject { ["role"] = "assistant", ["content"] = $"Total {results[^1]}.\nAnswer: {results[^1]}" };
    }

    private static JsonObject Calls(IEnumerable<(string Name, JsonObject Args)> calls) => new()
    {
        ["role"] = "assistant",
        ["content"] = null,
        ["tool_calls"] = new JsonArray(calls.Select((c, i) => (JsonNode?)new JsonObject
        {
            ["id"] = $"call_{i}",
            ["type"] = "function",
            ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = c.Args.ToJsonString() },
        }).ToArray()),
    };

    [Fact]
    public async Task EndpointTrajectoriesAreJudgedByTheRealEnvironments()
    {
        string keyVar = "K2RL_SYNTH_TEST_KEY_" + Guid.NewGuid().ToString("N")[..8];
        Environment.SetEnvironmentVariable(keyVar, "secret");
        var spec = new SynthGeneratorSpec { Kind = SynthGeneratorSpec.Http, Url = endpoint.ToString(), Model = "fake", ApiKeyEnv = keyVar, Batch = 4 };
        using var policy = OpenAiPolicy.FromSpec(spec);
        var job = SynthPipelineTests.Job(12, ("arithmetic", 1), ("tool_use", 1), ("countdown", 1)) with { Generator = spec };
        var summary = await SynthesisPipeline.RunAsync(job, dir, new SynthRunOptions { ModelSources = new Dictionary<SynthGeneratorSpec, SynthModelSource> { [spec] = new(policy, "http:fake") } });

        Assert.Equal(12, summary.Judged);
        Assert.Equal(4, summary.ByEnv["arithmetic"].Kept + summary.ByEnv["arithmetic"].Duplicates);
        Assert.Equal(4, summary.ByEnv["tool_use"].Kept);
        Assert.Equal(4, summary.ByEnv["countdown"].Rejected);   // HTTP 500: an empty action, which the verifier refuses
        Assert.Equal(4, summary.RejectedByReason["verifier"]);
        Assert.Equal(4, policy.Failures);
        Assert.Contains("HTTP 500", policy.LastError);

        var records = SftDataset.Read(Path.Combine(dir, SynthesisPipeline.TrainFile));
        var tool = records.First(r => r.Env == "tool_use");
        Assert.Equal(3, tool.Messages.Count(m => m.Role == K2RL.Common.Chat.Role.Assistant));
        Assert.Equal("lookup", tool.Messages[2].ToolCalls![0].Name);
        Assert.Contains("\"source\":\"http:fake\"", tool.ProvenanceJson);
        lock (seen)
        {
            Assert.All(seen, s => Assert.Equal("Bearer secret", s.Auth));
            // A later turn carries the earlier calls in the OpenAI layout, answered by role "tool" messages with their ids.
            var turn = seen.Select(s => s.Body).First(b => b["messages"]!.AsArray().Any(m => m!["role"]!.GetValue<string>() == "tool"));
            var call = turn["messages"]!.AsArray().First(m => m!["tool_calls"] is not null)!["tool_calls"]![0]!;
            Assert.Equal("functions.lookup:0", call["id"]!.GetValue<string>());
            Assert.Equal("function", turn["tools"]![0]!["type"]!.GetValue<string>());
            Assert.Equal("functions.lookup:0", turn["messages"]!.AsArray().First(m => m!["role"]!.GetValue<string>() == "tool")!["tool_call_id"]!.GetValue<string>());
        }
    }

    [Fact]
    public void AnUnsetKeyVariableIsAConfigError()
    {
        var spec = new SynthGeneratorSpec { Kind = SynthGeneratorSpec.Http, Url = endpoint.ToString(), ApiKeyEnv = "K2RL_SYNTH_SURELY_UNSET_VAR" };
        var e = Assert.Throws<ConfigException>(() => OpenAiPolicy.FromSpec(spec));
        Assert.Contains("K2RL_SYNTH_SURELY_UNSET_VAR, which is not set", e.Message);
    }
}
