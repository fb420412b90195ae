using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace K2RL.Gym.Critic;

/// <summary>
/// Answers comparison prompts with free text (the verdict is parsed afterwards by <see cref="VerdictParser"/>).
/// Takes a batch so a model-backed judge can generate them together. A judge that fails on a prompt returns null
/// for it (counted as unparseable); only cancellation throws.
/// </summary>
public interface IJudge
{
    string Name { get; }

    Task<IReadOnlyList<string?>> JudgeAsync(IReadOnlyList<string> prompts, CancellationToken ct = default);
}

/// <summary>A judge for tests and experiments: a function from prompt to verdict text.</summary>
public sealed class ScriptedJudge(Func<string, string?> answer) : IJudge
{
    public string Name => "scripted";

    /// <summary>Prompts seen, in order.</summary>
    public List<string> Seen { get; } = [];

    public Task<IReadOnlyList<string?>> JudgeAsync(IReadOnlyList<string> prompts, CancellationToken ct = default)
    {
        lock (Seen)
        {
            Seen.AddRange(prompts);
        }

        return Task.FromResult<IReadOnlyList<string?>>(prompts.Select(answer).ToList());
    }

    /// <summary>A judge that prefers the longer of the two responses (ties on equal length).</summary>
    public static ScriptedJudge PreferLonger() => new(p =>
    {
        var (a, b) = CriticProtocol.ResponsesOf(p);
        return a.Length == b.Length ? "Verdict: [[TIE]]" : a.Length > b.Length ? "Verdict: [[A]]" : "Verdict: [[B]]";
    });
}

/// <summary>
/// An external judge served over HTTP with the OpenAI-compatible chat-completions API: POST
/// <c>{"model", "messages": [{"role": "user", "content": prompt}], "temperature": 0}</c>, verdict from
/// <c>choices[0].message.content</c>. Requests run concurrently up to a limit, each with a timeout; a failed
/// request (status, timeout, bad JSON) yields null and is counted in <see cref="Failures"/>.
/// </summary>
public sealed class HttpJudge : IJudge, IDisposable
{
    private readonly HttpClient http;
    private readonly bool ownsClient;
    private readonly Uri endpoint;
    private readonly string model;
    private readonly SemaphoreSlim concurrency;
    private readonly TimeSpan timeout;
    private int failures;

    public HttpJudge(Uri endpoint, string model = "judge", int maxConcurrency = 4, TimeSpan? timeout = null,
        HttpClient? client = null)
    {
        this.endpoint = endpoint;
        this.model = model;
        this.timeout = timeout ?? TimeSpan.FromSeconds(60);
        concurrency = new SemaphoreSlim(Math.Max(1, maxConcurrency));
        ownsClient = client is null;
        http = client ?? new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
    }

    public string Name => "http";

    public int Failures => Volatile.Read(ref failures);

    /// <summary>The last failure's description, for logs.</summary>
    public string? LastError { get; private set; }

    public async Task<IReadOnlyList<string?>> JudgeAsync(IReadOnlyList<string> prompts, CancellationToken ct = default)
    {
        var tasks = prompts.Select(p => OneAsync(p, ct)).ToArray();
        return await Task.WhenAll(tasks);
    }

    private async Task<string?> OneAsync(string prompt, CancellationToken ct)
    {
        await concurrency.WaitAsync(ct);
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(timeout);
            var body = new JsonObject
            {
                ["model"] = model,
                ["temperature"] = 0,
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt }),
            };
            using var response = await http.PostAsJsonAsync(endpoint, body, cts.Token);
            if (!response.IsSuccessStatusCode)
            {
                return Fail($"HTTP {(int)response.StatusCode} from {endpoint}");
            }

            var json = await response.Content.ReadFromJsonAsync<JsonNode>(cts.Token);
            string? content = json?["choices"]?[0]?["message"]?["content"]?.GetValue<string>();
            return content ?? Fail($"no choices[0].message.content in the reply from {endpoint}");
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return Fail($"timed out after {timeout.TotalSeconds:0.#} s waiting for {endpoint}");
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or InvalidOperationException or FormatException)
        {
            return Fail($"{endpoint}: {e.Message}");
        }
        finally
        {
            concurrency.Release();
        }
    }

    private string? Fail(string why)
    {
        Interlocked.Increment(ref failures);
        LastError = why;
        return null;
    }

    public void Dispose()
    {
        if (ownsClient)
        {
            http.Dispose();
        }

        concurrency.Dispose();
    }
}
