namespace K2RL.Common.Rpc;

/// <summary>Answers a unary call.</summary>
public delegate Task<TResponse> UnaryHandler<TRequest, TResponse>(TRequest request, ServerCallContext context);

/// <summary>Answers one request with a stream of responses.</summary>
public delegate Task ServerStreamingHandler<TRequest, TResponse>(
    TRequest request, IServerStreamWriter<TResponse> responses, ServerCallContext context);

/// <summary>Reads a stream of requests and answers once.</summary>
public delegate Task<TResponse> ClientStreamingHandler<TRequest, TResponse>(
    IAsyncEnumerable<TRequest> requests, ServerCallContext context);

/// <summary>Reads requests and writes responses, interleaved as the handler likes.</summary>
public delegate Task DuplexHandler<TRequest, TResponse>(
    IAsyncEnumerable<TRequest> requests, IServerStreamWriter<TResponse> responses, ServerCallContext context);

/// <summary>Writes response messages of a streaming call, one at a time (not concurrently).</summary>
public interface IServerStreamWriter<in T>
{
    /// <summary>Sends one message and flushes it; honours the call's cancellation token.</summary>
    Task WriteAsync(T message);
}

/// <summary>What a handler knows about its call.</summary>
public sealed class ServerCallContext
{
    internal ServerCallContext(
        string method, DateTime? deadline, CancellationToken cancellationToken,
        IReadOnlyDictionary<string, string> requestHeaders, string peer)
    {
        Method = method;
        Deadline = deadline;
        CancellationToken = cancellationToken;
        RequestHeaders = requestHeaders;
        Peer = peer;
    }

    /// <summary>The full method name, "/package.Service/Method".</summary>
    public string Method { get; }

    /// <summary>When the client gives up (UTC), from <c>grpc-timeout</c>; null when it set none.</summary>
    public DateTime? Deadline { get; }

    /// <summary>Fires when the client cancels, the deadline passes or the server stops.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>Request headers (custom metadata and the gRPC ones), lower-case names; pseudo-headers left out.</summary>
    public IReadOnlyDictionary<string, string> RequestHeaders { get; }

    /// <summary>The client's address, "ip:port".</summary>
    public string Peer { get; }
}
