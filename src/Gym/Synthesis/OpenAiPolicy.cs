using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Common.Chat;
using K2RL.Gym.Eval;

namespace K2RL.Gym.Synthesis;

/// <summary>
/// A policy served by an OpenAI-compatible chat-completions endpoint (the <c>http</c> trajectory source). Each request
/// POSTs <c>{"model", "messages", "tools", "temperature", "max_tokens"}</c>: the conversation in the OpenAI layout
/// (assistant tool calls as <c>tool_calls</c> with <c>functions.NAME:INDEX</c> ids, tool results as role <c>tool</c>),
/// the declarations as <c>{"type": "function", "function": {...}}</c>. The reply's <c>content</c> and
/// <c>tool_calls</c> become an action in the chat format (calls numbered after those already in the conversation).
/// Requests of a batch run concurrently, each with a timeout; a failed one (status, timeout, a reply without
/// choices) yields an empty action, counted in <see cref="Failures"/>. Only cancellation throws.
/// </summary>
public sealed class OpenAiPolicy : IPolicy, IDisposable
{
    private readonly HttpClient http;
    private readonly Uri endpoint;
    private readonly string model;
    private readonly string? apiKey;
    private readonly float temperature;
    private readonly int maxTokens;
    private readonly TimeSpan timeout;
    private int failures;

    public OpenAiPolicy(Uri endpoint, string model, string? apiKey = null, float temperature = 0, int maxTokens = 256, TimeSpan? timeout = null)
    {
        this.endpoint = endpoint;
        this.model = model;
        this.apiKey = apiKey;
        this.temperature = temperature;
        this.maxTokens = maxTokens;
        this.timeout = timeout ?? TimeSpan.FromSeconds(60);
        http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
    }

    /// <summary>The policy of a job's <c>generator: {kind: http}</c>; a named key variable that is unset is a <see cref="ConfigException"/>.</summary>
    public static OpenAiPolicy FromSpec(SynthGeneratorSpec spec)
    {
        string? key = null;
        if (spec.ApiKeyEnv is { } name)
        {
            key = Environment.GetEnvironmentVariable(name);
            if (string.IsNullOrEmpty(key))
            {
                throw new ConfigException($"generator.api_key_env names the environment variable {name}, which is not set");
            }
        }

        return new OpenAiPolicy(new Uri(spec.Url!), spec.Model, key, spec.Temperature, spec.MaxTokens, TimeSpan.FromSeconds(spec.TimeoutSeconds));
    }

    public int Failures => Volatile.Read(ref failures);

    public string? LastError { get; private set; }

    public async Task<IReadOnlyList<string>> GenerateAsync(IReadOnlyList<PolicyRequest> requests, CancellationToken ct = default) =>
        await Task.WhenAll(requests.Select(r => OneAsync(r, ct)));

    private async Task<string> OneAsync(PolicyRequest r, CancellationToken ct)
    {
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(timeout);
            using var message = new HttpRequestMessage(HttpMethod.Post, endpoint) { Content = JsonContent.Create(Body(r)) };
            if (apiKey is not null)
            {
                message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
            }

            using var response = await http.SendAsync(message, cts.Token);
            if (!response.IsSuccessStatusCode)
            {
                return Fail($"HTTP {(int)response.StatusCode} from {endpoint}");
            }

            var reply = (await response.Content.ReadFromJsonAsync<JsonNode>(cts.Token))?["choices"]?[0]?["message"];
            return reply is JsonObject o ? Action(o, r.Conversation) : Fail($"no choices[0].message in the reply from {endpoint}");
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return Fail($"timed out after {timeout.TotalSeconds:0.#} s waiting for {endpoint}");
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or InvalidOperationException or FormatException)
        {
            return Fail($"{endpoint}: {e.Message}");
        }
    }

    private JsonObject Body(PolicyRequest r)
    {
        var body = new JsonObject
        {
            ["model"] = model,
            ["temperature"] = temperature,
            ["max_tokens"] = maxTokens,
            ["messages"] = new JsonArray(r.Conversation.Select(m => (JsonNode?)ToOpenAi(m)).ToArray()),
        };
        if (r.Tools.Count > 0)
        {
            body["tools"] = JsonNode.Parse(ToolSpec.DeclarationJson(r.Tools));
        }

        return body;
    }

    /// <summary>One message in the OpenAI layout; an assistant action's tool-call section becomes <c>tool_calls</c>.</summary>
    internal static JsonObject ToOpenAi(Message m)
    {
        string role = m.Role switch { Role.System => "system", Role.User => "user", Role.Assistant => "assistant", _ => "tool" };
        var o = new JsonObject { ["role"] = role };
        if (m.Role == Role.Assistant)
        {
            var calls = m.ToolCalls ?? [];
            string content = m.Content;
            if (calls.Count == 0 && ChatFormat.TryParseToolCalls(m.Content, out string text, out var parsed, out _) && parsed.Count > 0)
            {
                (content, calls) = (text, parsed);
            }

            o["content"] = content;
            if (calls.Count > 0)
            {
                o["tool_calls"] = new JsonArray(calls.Select(c => (JsonNode?)new JsonObject
                {
                    ["id"] = c.Id,
                    ["type"] = "function",
                    ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = c.ArgumentsJson },
                }).ToArray());
            }

            return o;
        }

        o["content"] = m.Content;
        if (m.Role == Role.Tool)
        {
            o["tool_call_id"] = m.ToolCallId;
        }

        return o;
    }

    /// <summary>The reply as an action: its content, then its calls in the chat format.</summary>
    internal static string Action(JsonObject reply, IReadOnlyList<Message> conversation)
    {
        string content = reply["content"] is JsonValue v && v.TryGetValue(out string? s) ? s : "";
        if (reply["tool_calls"] is not JsonArray { Count: > 0 } calls)
        {
            return content;
        }

        int before = conversation.Sum(m => m.Role != Role.Assistant ? 0
            : (m.ToolCalls?.Count ?? (ChatFormat.TryParseToolCalls(m.Content, out _, out var c, out _) ? c.Count : 0)));
        var list = calls.Select((c, i) => ToolCall.Create(
            c?["function"]?["name"]?.GetValue<string>() ?? throw new FormatException($"tool_calls[{i}] has no function.name"),
            before + i,
            c["function"]?["arguments"] is JsonValue a && a.TryGetValue(out string? args) ? args : c["function"]?["arguments"]?.ToJsonString() ?? "{}")).ToList();
        return content + ChatFormat.FormatToolCalls(list);
    }

    private string Fail(string why)
    {
        Interlocked.Increment(ref failures);
        LastError = why;
        return "";
    }

    public void Dispose() => http.Dispose();
}
