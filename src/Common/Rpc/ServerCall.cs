using System.Runtime.CompilerServices;
using Google.Protobuf;
using Microsoft.AspNetCore.Http;

namespace K2RL.Common.Rpc;

/// <summary>One call on the server: reads request frames, writes response frames, guards the streams.</summary>
internal sealed class ServerCall
{
    private readonly HttpContext http;
    private readonly RpcServerOptions options;
    private int readStarted;
    private int writing;
    private volatile bool completed;

    public ServerCall(HttpContext http, ServerCallContext context, RpcServerOptions options)
    {
        this.http = http;
        this.options = options;
        Context = context;
    }

    public ServerCallContext Context { get; }

    /// <summary>The one request of a unary or server-streaming call: exactly one message, then the end of the stream.</summary>
    public async Task<T> ReadSingleAsync<T>(MessageParser<T> parser)
        where T : class, IMessage<T>
    {
        readStarted = 1;
        var body = http.Request.Body;
        var ct = Context.CancellationToken;
        var message = await GrpcWire.ReadMessageAsync(body, parser, options.MaxReceiveMessageSize, ct).ConfigureAwait(false)
            ?? throw new RpcException(StatusCode.Internal, $"{Context.Method} expects one request message, got none");
        if (await GrpcWire.ReadMessageAsync(body, parser, options.MaxReceiveMessageSize, ct).ConfigureAwait(false) is not null)
        {
            throw new RpcException(StatusCode.Internal, $"{Context.Method} expects one request message, got more");
        }

        return message;
    }

    /// <summary>The request stream of a client-streaming or duplex call; it can be enumerated once.</summary>
    public async IAsyncEnumerable<T> ReadAll<T>(MessageParser<T> parser, [EnumeratorCancellation] CancellationToken ct = default)
        where T : class, IMessage<T>
    {
        if (Interlocked.Exchange(ref readStarted, 1) != 0)
        {
            throw new InvalidOperationException($"the request stream of {Context.Method} can be read only once");
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(Context.CancellationToken, ct);
        while (await GrpcWire.ReadMessageAsync(http.Request.Body, parser, options.MaxReceiveMessageSize, linked.Token).ConfigureAwait(false)
               is { } message)
        {
            yield return message;
        }
    }

    public IServerStreamWriter<T> CreateWriter<T>()
        where T : class, IMessage<T> => new Writer<T>(this);

    public Task WriteResponseAsync(IMessage? response) =>
        response is null
            ? throw new RpcException(StatusCode.Internal, $"{Context.Method} handler returned no response")
            : WriteAsync(response);

    /// <summary>After this the status goes out and the handler's writer refuses further messages.</summary>
    public void Complete() => completed = true;

    private async Task WriteAsync(IMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (completed)
        {
            throw new InvalidOperationException($"{Context.Method} has ended; its response stream is closed");
        }

        if (Interlocked.Exchange(ref writing, 1) != 0)
        {
            throw new InvalidOperationException($"concurrent writes to the response stream of {Context.Method}");
        }

        try
        {
            await GrpcWire.WriteMessageAsync(http.Response.Body, message, options.MaxSendMessageSize, Context.CancellationToken)
                .ConfigureAwait(false);
        }
        finally
        {
            Volatile.Write(ref writing, 0);
        }
    }

    private sealed class Writer<T>(ServerCall call) : IServerStreamWriter<T>
        where T : class, IMessage<T>
    {
        public Task WriteAsync(T message) => call.WriteAsync(message);
    }
}
