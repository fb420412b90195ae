using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf;

namespace K2RL.Common.Rpc;

/// <summary>
/// One call on the client, of any kind: sends the request (a fixed body or a pushed stream), reads
/// response frames, takes the status from the trailers (or the headers of a trailers-only response),
/// and turns deadlines, cancellation and transport failures into <see cref="RpcException"/>.
/// </summary>
internal sealed class ClientCall<TRequest, TResponse> : IDisposable
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    private const long Http2Cancel = 0x8;
    private const long Http2RefusedStream = 0x7;

    private readonly RpcClient client;
    private readonly RpcMethod<TRequest, TResponse> method;
    private readonly CallOptions options;
    private readonly TimeSpan? timeout;
    private readonly DateTime startedUtc = DateTime.UtcNow;
    private readonly CancellationTokenSource? deadline;
    private readonly CancellationTokenSource call;
    private Task<HttpResponseMessage>? responseTask;
    private HttpResponseMessage? response;
    private Stream? body;
    private PushStreamContent? push;
    private int writing;
    private bool requestCompleted;
    private bool finished;
    private RpcException? failure;

    public ClientCall(RpcClient client, RpcMethod<TRequest, TResponse> method, CallOptions options, CancellationToken extra)
    {
        this.client = client;
        this.method = method;
        this.options = options;
        timeout = options.Timeout ?? client.Options.DefaultTimeout;
        if (timeout is { } t && t > TimeSpan.Zero && t < TimeSpan.FromDays(24))
        {
            deadline = new CancellationTokenSource(t);
        }

        call = CancellationTokenSource.CreateLinkedTokenSource(
            options.CancellationToken, extra, deadline?.Token ?? CancellationToken.None);
    }

    private CancellationToken Token => call.Token;

    /// <summary>Sends a unary or server-streaming request: one framed message, then the end of the stream.</summary>
    public void Start(TRequest request)
    {
        byte[] frame;
        try
        {
            frame = GrpcWire.Frame(request, client.Options.MaxSendMessageSize);
        }
        catch (RpcException e)
        {
            throw Fail(e.StatusCode, e.Detail, e);
        }

        Send(new ByteArrayContent(frame));
    }

    /// <summary>Opens a request stream that <see cref="WriteAsync"/> pushes into.</summary>
    public void StartStreaming()
    {
        push = new PushStreamContent();
        Send(push);
    }

    public async Task WriteAsync(TRequest message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (failure is not null)
        {
            throw failure;
        }

        if (push is null || requestCompleted)
        {
            throw new InvalidOperationException($"the request stream of {method.FullName} is closed");
        }

        if (Interlocked.Exchange(ref writing, 1) != 0)
        {
            throw new InvalidOperationException($"concurrent writes to the request stream of {method.FullName}");
        }

        try
        {
            var stream = await push.RequestStream.WaitAsync(Token).ConfigureAwait(false);
            await GrpcWire.WriteMessageAsync(stream, message, client.Options.MaxSendMessageSize, Token).ConfigureAwait(false);
        }
        catch (RpcException e) when (e.Method is null)
        {
            // Our own limit: nothing was sent, the call is abandoned.
            throw Fail(e.StatusCode, e.Detail, e);
        }
        catch (Exception e) when (e is not RpcException)
        {
            throw await WriteFailureAsync(e).ConfigureAwait(false);
        }
        finally
        {
            Volatile.Write(ref writing, 0);
        }
    }

    public void CompleteRequest()
    {
        if (Volatile.Read(ref writing) != 0)
        {
            throw new InvalidOperationException($"complete the request stream of {method.FullName} after the last write has finished");
        }

        requestCompleted = true;
        push?.Complete();
    }

    /// <summary>The next response message, or null once the call has ended with OK.</summary>
    public async Task<TResponse?> ReadAsync()
    {
        if (finished)
        {
            return failure is null ? null : throw failure;
        }

        var stream = await ResponseBodyAsync().ConfigureAwait(false);
        if (stream is null)
        {
            return null;
        }

        TResponse? message;
        try
        {
            message = await GrpcWire.ReadMessageAsync(stream, method.ResponseParser, client.Options.MaxReceiveMessageSize, Token)
                .ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw Fail(e.StatusCode, e.Detail, e);
        }
        catch (Exception e)
        {
            throw Map(e);
        }

        if (message is null)
        {
            finished = true;
            ThrowIfNotOk(response!.TrailingHeaders, "trailers");
        }

        return message;
    }

    /// <summary>Exactly one response message, then OK.</summary>
    public async Task<TResponse> ReadSingleResponseAsync()
    {
        var message = await ReadAsync().ConfigureAwait(false)
            ?? throw Fail(StatusCode.Internal, "the server sent no response message for a single-response call");
        if (await ReadAsync().ConfigureAwait(false) is not null)
        {
            throw Fail(StatusCode.Internal, "the server sent more than one response message for a single-response call");
        }

        return message;
    }

    /// <summary>Cancels the call if it is still running (the server sees RST_STREAM), and frees it.</summary>
    public void Dispose()
    {
        finished = true;
        Abort();
        call.Dispose();
        deadline?.Dispose();
    }

    /// <summary>Ends the HTTP/2 stream now: an unfinished request or response is reset, which the server sees as cancellation.</summary>
    private void Abort()
    {
        call.Cancel();
        push?.Abort();
        body?.Dispose();
        response?.Dispose();
    }

    private void Send(HttpContent content)
    {
        if (timeout is { } t && t <= TimeSpan.Zero)
        {
            throw Fail(StatusCode.DeadlineExceeded, $"the deadline ({t}) had passed before the call started");
        }

        content.Headers.ContentType = new MediaTypeHeaderValue(GrpcWire.ContentType);
        var request = new HttpRequestMessage(HttpMethod.Post, new Uri(client.Address, method.FullName))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = content,
        };
        request.Headers.TE.Add(new TransferCodingWithQualityHeaderValue("trailers"));
        request.Headers.UserAgent.Add(new ProductInfoHeaderValue("k2rl-rpc", "1.0"));
        request.Headers.TryAddWithoutValidation(GrpcWire.AcceptEncodingHeader, GrpcWire.Identity);
        if (deadline is not null)
        {
            var remaining = timeout!.Value - (DateTime.UtcNow - startedUtc);
            request.Headers.TryAddWithoutValidation(GrpcWire.TimeoutHeader, GrpcWire.EncodeTimeout(remaining));
        }

        foreach (var (name, value) in options.Headers ?? new Dictionary<string, string>())
        {
            if (!request.Headers.TryAddWithoutValidation(name, value))
            {
                throw new ArgumentException($"header '{name}' cannot be sent with {method.FullName}");
            }
        }

        responseTask = client.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Token);
    }

    /// <summary>Waits for the response headers and checks them; null when the response is trailers-only with OK.</summary>
    private async Task<Stream?> ResponseBodyAsync()
    {
        if (body is not null)
        {
            return body;
        }

        try
        {
            response ??= await responseTask!.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            throw Map(e);
        }

        if (response.StatusCode != HttpStatusCode.OK)
        {
            var code = GrpcWire.FromHttpStatus((int)response.StatusCode);
            throw Fail(code, $"HTTP status {(int)response.StatusCode} {response.StatusCode}{DetailFrom(response.Headers)}");
        }

        if (response.Headers.Contains(GrpcWire.StatusHeader))
        {
            finished = true;
            ThrowIfNotOk(response.Headers, "headers");
            return null;
        }

        string? contentType = response.Content.Headers.ContentType?.MediaType;
        if (!GrpcWire.IsGrpcContentType(contentType))
        {
            throw Fail(StatusCode.Internal, $"the response content-type is '{contentType}', not application/grpc");
        }

        try
        {
            body = await response.Content.ReadAsStreamAsync(Token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            throw Map(e);
        }

        return body;
    }

    private void ThrowIfNotOk(HttpHeaders headers, string where)
    {
        if (!headers.TryGetValues(GrpcWire.StatusHeader, out var values)
            || !int.TryParse(values.FirstOrDefault(), NumberStyles.None, CultureInfo.InvariantCulture, out int status))
        {
            throw Fail(StatusCode.Internal, $"the response ended without a valid grpc-status in its {where}");
        }

        if (status != (int)StatusCode.OK)
        {
            var code = Enum.IsDefined((StatusCode)status) ? (StatusCode)status : StatusCode.Unknown;
            string detail = headers.TryGetValues(GrpcWire.MessageHeader, out var messages)
                ? GrpcWire.DecodeMessage(messages.First())
                : "";
            throw Fail(code, detail);
        }
    }

    private static string DetailFrom(HttpHeaders headers) =>
        headers.TryGetValues(GrpcWire.MessageHeader, out var messages) ? ": " + GrpcWire.DecodeMessage(messages.First()) : "";

    /// <summary>A write failed: the server has probably ended the call; report its status if it sent one.</summary>
    private async Task<RpcException> WriteFailureAsync(Exception e)
    {
        if (Token.IsCancellationRequested || responseTask is null)
        {
            return Map(e);
        }

        try
        {
            while (await ReadAsync().ConfigureAwait(false) is not null)
            {
            }
        }
        catch (RpcException status)
        {
            return status;
        }

        return Map(e);
    }

    /// <summary>The status of a call that failed with an exception: our deadline, the caller's cancellation, or the transport.</summary>
    private RpcException Map(Exception e)
    {
        if (failure is not null)
        {
            return failure; // the first failure is the reason; later ones follow from aborting the stream
        }

        if (e is RpcException rpc)
        {
            return rpc.Method is null ? Fail(rpc.StatusCode, rpc.Detail, rpc) : rpc;
        }

        if (deadline?.IsCancellationRequested == true)
        {
            return Fail(StatusCode.DeadlineExceeded, $"deadline of {timeout} exceeded", e);
        }

        if (Token.IsCancellationRequested)
        {
            return Fail(StatusCode.Cancelled, "cancelled by the caller", e);
        }

        for (var inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is HttpProtocolException protocol)
            {
                return protocol.ErrorCode switch
                {
                    Http2Cancel => Fail(StatusCode.Cancelled, $"the server reset the stream: {protocol.Message}", e),
                    Http2RefusedStream => Fail(StatusCode.Unavailable, $"the server refused the stream: {protocol.Message}", e),
                    _ => Fail(StatusCode.Internal, $"HTTP/2 error {protocol.ErrorCode}: {protocol.Message}", e),
                };
            }
        }

        return e is HttpRequestException or IOException
            ? Fail(StatusCode.Unavailable, e.Message, e)
            : Fail(StatusCode.Unknown, $"{e.GetType().Name}: {e.Message}", e);
    }

    /// <summary>Ends the call with a status: remembers the first failure, resets the stream.</summary>
    private RpcException Fail(StatusCode code, string detail, Exception? inner = null)
    {
        var e = inner is null
            ? new RpcException(code, detail, method.FullName, client.Address)
            : new RpcException(code, detail, method.FullName, client.Address, inner);
        failure ??= e;
        finished = true;
        Abort();
        return e;
    }
}
