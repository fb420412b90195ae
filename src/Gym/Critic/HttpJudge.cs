using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common;

namespace K2RL.Gym.Critic;

/// <summary>How <see cref="HttpJudge"/> talks to its endpoint.</summary>
public sealed record HttpJudgeOptions
{
    /// <summary>The <c>model</c> field of each request.</summary>
    public string Model { get; init; } = "judge";

    /// <summary>Requests in flight at once (a backoff wait does not hold a slot).</summary>
    public int MaxConcurrency { get; init; } = 4;

    /// <summary>Limit of one attempt, from sending the request to the last byte of the reply.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Further attempts after a transient failure (timeout, no connection, HTTP 408, 429 or 5xx).</summary>
    public int Retries { get; init; } = 2;

    /// <summary>Wait before the first retry, doubled before each further one (at most 30 s; a longer Retry-After is capped too).</summary>
    public TimeSpan RetryBackoff { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Name of the environment variable that holds the API key (sent as <c>Authorization: Bearer</c>); null: none.</summary>
    public string? ApiKeyEnv { get; init; }

    /// <summary>Largest reply body read; a longer one is a failed request.</summary>
    public long MaxReplyBytes { get; init; } = 4 << 20;
}

/// <summary>
/// An external judge served over HTTP with the OpenAI-compatible chat-completions API: POST
/// <c>{"model", "messages": [{"role": "user", "content": prompt}], "temperature": 0}</c>, verdict from
/// <c>choices[0].message.content</c>. Requests run concurrently up to a limit, each attempt with a timeout; transient
/// failures are retried with exponential backoff. A request that still fails (status, timeout, bad JSON) yields no
/// answer, with the reason (<see cref="IJudge.AnswerAsync"/>), and is counted in <see cref="Failures"/>. The API key
/// is read from the environment variable the options name, sent in the header and never written anywhere: messages
/// name the endpoint by scheme, host and path only (no user info, no query).
/// </summary>
public sealed class HttpJudge : IJudge, IDisposable
{
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

    private readonly HttpClient http;
    private readonly bool ownsClient;
    private readonly Uri endpoint;
    private readonly string shownEndpoint;
    private readonly HttpJudgeOptions options;
    private readonly string? apiKey;
    private readonly SemaphoreSlim concurrency;
    private int failures;
    private int attempts;

    public HttpJudge(Uri endpoint, string model = "judge", int maxConcurrency = 4, TimeSpan? timeout = null,
        HttpClient? client = null)
        : this(endpoint, new HttpJudgeOptions
        {
            Model = model, MaxConcurrency = maxConcurrency, Timeout = timeout ?? TimeSpan.FromSeconds(60),
        }, client)
    {
    }

    /// <exception cref="ConfigException">an option out of range, or the named key variable unset.</exception>
    public HttpJudge(Uri endpoint, HttpJudgeOptions options, HttpClient? client = null)
    {
        shownEndpoint = Display(endpoint);
        if (!endpoint.IsAbsoluteUri || endpoint.Scheme is not ("http" or "https"))
        {
            throw new ConfigException($"{shownEndpoint}: a judge endpoint must be an http:// or https:// URL");
        }

        if (options.MaxConcurrency < 1 || options.Retries < 0 || options.Timeout <= TimeSpan.Zero || options.RetryBackoff < TimeSpan.Zero)
        {
            throw new ConfigException($"{shownEndpoint}: the judge's concurrency must be >= 1, retries >= 0, timeout > 0 and backoff >= 0 " +
                                      $"(got {options.MaxConcurrency}, {options.Retries}, {options.Timeout}, {options.RetryBackoff})");
        }

        if (options.ApiKeyEnv is { } variable)
        {
            apiKey = Environment.GetEnvironmentVariable(variable);
            if (string.IsNullOrEmpty(apiKey))
            {
                throw new ConfigException($"{shownEndpoint}: the API key variable '{variable}' is not set");
            }
        }

        this.endpoint = endpoint;
        this.options = options;
        concurrency = new SemaphoreSlim(options.MaxConcurrency);
        ownsClient = client is null;
        http = client ?? new HttpClient { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
    }

    public string Name => "http";

    /// <summary>How messages name an endpoint: scheme, host, port and path; never user info or a query (they may hold keys).</summary>
    public static string Display(Uri endpoint) => endpoint.IsAbsoluteUri
        ? endpoint.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped)
        : "(a relative URL)";

    /// <summary>Prompts that got no answer.</summary>
    public int Failures => Volatile.Read(ref failures);

    /// <summary>Requests sent, retries included.</summary>
    public int Attempts => Volatile.Read(ref attempts);

    /// <summary>The last failure's description, for logs.</summary>
    public string? LastError { get; private set; }

    public async Task<IReadOnlyList<string?>> JudgeAsync(IReadOnlyList<string> prompts, CancellationToken ct = default) =>
        (await AnswerAsync(prompts, ct)).Select(a => a.Text).ToList();

    public async Task<IReadOnlyList<JudgeAnswer>> AnswerAsync(IReadOnlyList<string> prompts, CancellationToken ct = default) =>
        await Task.WhenAll(prompts.Select(p => OneAsync(p, ct)));

    private async Task<JudgeAnswer> OneAsync(string prompt, CancellationToken ct)
    {
        for (int attempt = 1; ; attempt++)
        {
            var (text, failure, retryAfter) = await AttemptAsync(prompt, ct);
            if (text is not null)
            {
                return new JudgeAnswer(text, null);
            }

            if (retryAfter is null || attempt > options.Retries)
            {
                string tries = attempt > 1 ? $" ({attempt} attempts)" : "";
                Interlocked.Increment(ref failures);
                LastError = failure + tries;
                return new JudgeAnswer(null, LastError);
            }

            var backoff = options.RetryBackoff * Math.Pow(2, attempt - 1);
            await Task.Delay(Min(Max(backoff, retryAfter.Value), MaxBackoff), ct);
        }
    }

    /// <summary>One request: the answer, or why not and (when it is worth another try) how long to wait at least.</summary>
    private async Task<(string? Text, string? Failure, TimeSpan? RetryAfter)> AttemptAsync(string prompt, CancellationToken ct)
    {
        await concurrency.WaitAsync(ct);
        try
        {
            Interlocked.Increment(ref attempts);
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(options.Timeout);
            using var request = new HttpRequestMessage(HttpMethod.Post, endpoint) { Content = JsonContent.Create(Body(prompt)) };
            if (apiKey is not null)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
            }

            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            if (!response.IsSuccessStatusCode)
            {
                int status = (int)response.StatusCode;
                bool transient = status is 408 or 429 || status >= 500;
                return (null, $"HTTP {status} from {shownEndpoint}", transient ? RetryAfter(response) : null);
            }

            await response.Content.LoadIntoBufferAsync(options.MaxReplyBytes, cts.Token);
            var json = await response.Content.ReadFromJsonAsync<JsonNode>(cts.Token);
            string? content = ContentOf(json);
            return content is null
                ? (null, $"{shownEndpoint}: the reply has no choices[0].message.content", null)
                : (content, null, null);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return (null, $"timed out after {options.Timeout.TotalSeconds:0.###} s waiting for {shownEndpoint}", TimeSpan.Zero);
        }
        catch (HttpRequestException e)
        {
            return (null, $"{shownEndpoint}: {e.Message}", e.StatusCode is null ? TimeSpan.Zero : null);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or NotSupportedException)
        {
            return (null, $"{shownEndpoint}: the reply is not an OpenAI chat completion ({e.GetType().Name}: {e.Message})", null);
        }
        finally
        {
            concurrency.Release();
        }
    }

    /// <summary><c>choices[0].message.content</c> when it is there and is text; null for any other shape.</summary>
    private static string? ContentOf(JsonNode? reply) =>
        reply is JsonObject o && o["choices"] is JsonArray { Count: > 0 } choices && choices[0] is JsonObject choice
        && choice["message"] is JsonObject message && message["content"] is JsonValue content && content.TryGetValue(out string? text)
            ? text
            : null;

    private JsonObject Body(string prompt) => new()
    {
        ["model"] = options.Model,
        ["temperature"] = 0,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt }),
    };

    private static TimeSpan RetryAfter(HttpResponseMessage response) =>
        response.Headers.RetryAfter?.Delta ?? TimeSpan.Zero;

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    public void Dispose()
    {
        if (ownsClient)
        {
            http.Dispose();
        }

        concurrency.Dispose();
    }
}
