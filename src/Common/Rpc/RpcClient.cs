using System.Net;
using System.Runtime.CompilerServices;
using Google.Protobuf;

namespace K2RL.Common.Rpc;

/// <summary>Limits and defaults of an <see cref="RpcClient"/>.</summary>
public sealed record RpcClientOptions
{
    /// <summary>The largest response message accepted; larger ones fail the call with RESOURCE_EXHAUSTED.</summary>
    public int MaxReceiveMessageSize { get; init; } = GrpcWire.DefaultMaxReceiveMessageSize;

    /// <summary>The largest request message sent; larger ones fail with RESOURCE_EXHAUSTED before anything is sent.</summary>
    public int MaxSendMessageSize { get; init; } = int.MaxValue;

    /// <summary>The deadline of calls whose <see cref="CallOptions.Timeout"/> is null; null means none.</summary>
    public TimeSpan? DefaultTimeout { get; init; }

    /// <summary>How long opening a connection may take before the call fails with UNAVAILABLE.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>Per-call settings: a deadline (as a timeout from now), a cancellation token, custom metadata.</summary>
public readonly record struct CallOptions(
    TimeSpan? Timeout = null,
    CancellationToken CancellationToken = default,
    IReadOnlyDictionary<string, string>? Headers = null);

/// <summary>
/// A gRPC client over HttpClient with HTTP/2 prior knowledge (h2c). Thread-safe; one per endpoint is enough,
/// calls are multiplexed. Every failure is an <see cref="RpcException"/> with a <see cref="StatusCode"/>.
/// </summary>
public sealed class RpcClient : IDisposable
{
    static RpcClient()
    {
        // Cleartext HTTP/2 without an upgrade (prior knowledge).
        AppContext.SetSwitch("System.Net.Http.SocketsHttpHandler.Http2UnencryptedSupport", true);
    }

    public RpcClient(Uri address, RpcClientOptions? options = null)
    {
        if (address.Scheme != Uri.UriSchemeHttp)
        {
            throw new ArgumentException($"RPC address {address} must be http:// (cleartext HTTP/2)", nameof(address));
        }

        Address = address;
        Options = options ?? new RpcClientOptions();
        var handler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            ConnectTimeout = Options.ConnectTimeout,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            KeepAlivePingDelay = TimeSpan.FromSeconds(60),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(20),
            UseProxy = false,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.None,
        };
        Http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
    }

    public RpcClient(string address, RpcClientOptions? options = null)
        : this(new Uri(address), options)
    {
    }

    public Uri Address { get; }

    public RpcClientOptions Options { get; }

    internal HttpClient Http { get; }

    /// <summary>One request, one response.</summary>
    public async Task<TResponse> UnaryAsync<TRequest, TResponse>(
        RpcMethod<TRequest, TResponse> method, TRequest request, CallOptions options = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        using var call = new ClientCall<TRequest, TResponse>(this, method, options, CancellationToken.None);
        call.Start(request);
        return await call.ReadSingleResponseAsync().ConfigureAwait(false);
    }

    /// <summary>One request, a stream of responses; leaving the loop early cancels the call.</summary>
    public async IAsyncEnumerable<TResponse> ServerStreamingAsync<TRequest, TResponse>(
        RpcMethod<TRequest, TResponse> method, TRequest request, CallOptions options = default,
        [EnumeratorCancellation] CancellationToken ct = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        using var call = new ClientCall<TRequest, TResponse>(this, method, options, ct);
        call.Start(request);
        while (await call.ReadAsync().ConfigureAwait(false) is { } response)
        {
            yield return response;
        }
    }

    /// <summary>Starts a call that takes a stream of requests and answers once (<see cref="ClientStreamingCall{TRequest,TResponse}.CompleteAsync"/>).</summary>
    public ClientStreamingCall<TRequest, TResponse> ClientStreaming<TRequest, TResponse>(
        RpcMethod<TRequest, TResponse> method, CallOptions options = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        var call = new ClientCall<TRequest, TResponse>(this, method, options, CancellationToken.None);
        call.StartStreaming();
        return new ClientStreamingCall<TRequest, TResponse>(call);
    }

    /// <summary>Starts a bidirectional call.</summary>
    public DuplexCall<TRequest, TResponse> Duplex<TRequest, TResponse>(
        RpcMethod<TRequest, TResponse> method, CallOptions options = default)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        var call = new ClientCall<TRequest, TResponse>(this, method, options, CancellationToken.None);
        call.StartStreaming();
        return new DuplexCall<TRequest, TResponse>(call);
    }

    public void Dispose() => Http.Dispose();
}

/// <summary>What client-streaming and duplex calls share: writing requests, and Dispose, which cancels the call if unfinished.</summary>
public abstract class RequestStreamingCall<TRequest, TResponse> : IDisposable
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    private protected RequestStreamingCall(ClientCall<TRequest, TResponse> call) => Call = call;

    private protected ClientCall<TRequest, TResponse> Call { get; }

    /// <summary>Sends one request message; not concurrently with another write.</summary>
    public Task WriteAsync(TRequest message) => Call.WriteAsync(message);

    public void Dispose() => Call.Dispose();
}

/// <summary>A client-streaming call: write requests, then <see cref="CompleteAsync"/> for the response.</summary>
public sealed class ClientStreamingCall<TRequest, TResponse> : RequestStreamingCall<TRequest, TResponse>
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    internal ClientStreamingCall(ClientCall<TRequest, TResponse> call)
        : base(call)
    {
    }

    /// <summary>Ends the request stream and waits for the response.</summary>
    public Task<TResponse> CompleteAsync()
    {
        Call.CompleteRequest();
        return Call.ReadSingleResponseAsync();
    }
}

/// <summary>A bidirectional call: write and read in any order; <see cref="CompleteRequest"/> ends the request stream.</summary>
public sealed class DuplexCall<TRequest, TResponse> : RequestStreamingCall<TRequest, TResponse>
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    internal DuplexCall(ClientCall<TRequest, TResponse> call)
        : base(call)
    {
    }

    /// <summary>Half-closes: the server sees the end of the request stream.</summary>
    public void CompleteRequest() => Call.CompleteRequest();

    /// <summary>The next response, or null when the server ended the call with OK; throws for any other status.</summary>
    public Task<TResponse?> ReadAsync() => Call.ReadAsync();

    /// <summary>The remaining responses.</summary>
    public async IAsyncEnumerable<TResponse> ReadAllAsync()
    {
        while (await Call.ReadAsync().ConfigureAwait(false) is { } response)
        {
            yield return response;
        }
    }
}
