using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace K2RL.Tests.Shared.Gym;

/// <summary>What the test server saw in one request to /v1/chat/completions.</summary>
public sealed record ChatRequest(string Path, string Model, string Prompt, string? Authorization, string Body);

/// <summary>How the test server answers: a status, a body, and a delay before it (a hang is a long delay).</summary>
public sealed record ChatReply(int Status, string Body, TimeSpan Delay = default)
{
    /// <summary>A 200 OpenAI chat completion whose message content is <paramref name="content"/>.</summary>
    public static ChatReply Content(string content) => new(200,
        JsonSerializer.Serialize(new { choices = new[] { new { index = 0, message = new { role = "assistant", content } } } }));
}

/// <summary>
/// A real OpenAI-compatible chat-completions server on 127.0.0.1 (System.Net.HttpListener on a free port) whose answers
/// the test decides: verdicts, garbage, HTTP errors, hangs. Records every request and the most requests it held at once.
/// </summary>
public sealed class ChatCompletionsServer : IDisposable
{
    private readonly HttpListener listener = new();
    private readonly Func<ChatRequest, ChatReply> answer;
    private readonly CancellationTokenSource stop = new();
    private readonly List<ChatRequest> requests = [];
    private int inFlight;
    private int maxInFlight;

    public ChatCompletionsServer(Func<ChatRequest, ChatReply> answer)
    {
        this.answer = answer;
        int port = FreePort();
        Root = new Uri($"http://127.0.0.1:{port}/");
        listener.Prefixes.Add(Root.ToString());
        listener.Start();
        _ = Task.Run(ServeAsync);
    }

    /// <summary>http://127.0.0.1:PORT/</summary>
    public Uri Root { get; }

    /// <summary>The chat-completions URL under an optional path prefix (<c>judge1</c> → /judge1/v1/chat/completions).</summary>
    public Uri Endpoint(string prefix = "") => new(Root, (prefix.Length > 0 ? prefix + "/" : "") + "v1/chat/completions");

    public IReadOnlyList<ChatRequest> Requests
    {
        get
        {
            lock (requests)
            {
                return requests.ToList();
            }
        }
    }

    public int MaxInFlight => Volatile.Read(ref maxInFlight);

    /// <summary>A port nothing listens on (free when asked).</summary>
    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
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

            _ = Task.Run(() => HandleAsync(ctx));
        }
    }

    private async Task HandleAsync(HttpListenerContext ctx)
    {
        int now = Interlocked.Increment(ref inFlight);
        int seen;
        while (now > (seen = Volatile.Read(ref maxInFlight)) && Interlocked.CompareExchange(ref maxInFlight, now, seen) != seen)
        {
        }

        try
        {
            string body = await new StreamReader(ctx.Request.InputStream).ReadToEndAsync();
            using var doc = JsonDocument.Parse(body);
            var request = new ChatRequest(ctx.Request.Url!.AbsolutePath, doc.RootElement.GetProperty("model").GetString()!,
                doc.RootElement.GetProperty("messages")[0].GetProperty("content").GetString()!, ctx.Request.Headers["Authorization"], body);
            lock (requests)
            {
                requests.Add(request);
            }

            var reply = answer(request);
            if (reply.Delay > TimeSpan.Zero)
            {
                await Task.Delay(reply.Delay, stop.Token);
            }

            byte[] bytes = Encoding.UTF8.GetBytes(reply.Body);
            ctx.Response.StatusCode = reply.Status;
            ctx.Response.ContentType = "application/json";
            await ctx.Response.OutputStream.WriteAsync(bytes, stop.Token);
            ctx.Response.Close();
        }
        catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or OperationCanceledException or IOException)
        {
            // the client gave up (a timeout under test) or the server is stopping
        }
        finally
        {
            Interlocked.Decrement(ref inFlight);
        }
    }

    public void Dispose()
    {
        stop.Cancel();
        listener.Close();
    }
}
