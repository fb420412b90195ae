using System.Net;
using Grpc.Net.Client;

namespace K2RL.Common.Rpc;

/// <summary>Limits of a client channel made by <see cref="GrpcChannels.Create(Uri, GrpcClientOptions?)"/>.</summary>
public sealed record GrpcClientOptions
{
    /// <summary>The largest response message accepted; a larger one fails its call with RESOURCE_EXHAUSTED.</summary>
    public int MaxReceiveMessageSize { get; init; } = GrpcServerOptions.DefaultMaxMessageSize;

    /// <summary>The largest request message sent (larger: RESOURCE_EXHAUSTED before sending); null for no limit: the server enforces its own.</summary>
    public int? MaxSendMessageSize { get; init; }

    /// <summary>How long opening a connection may take before the call fails with UNAVAILABLE.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The HTTP/2 stream receive window in bytes (responses streamed to this client); null keeps .NET's default.</summary>
    public int? Http2WindowBytes { get; init; }
}

/// <summary>
/// Client channels (Grpc.Net.Client) to K2RL's services: HTTP/2 cleartext, K2RL's message limits, no proxy. A channel is
/// thread-safe and multiplexes calls; make one per endpoint and pass it to the generated clients.
/// </summary>
public static class GrpcChannels
{
    public static GrpcChannel Create(Uri address, GrpcClientOptions? options = null)
    {
        if (address.Scheme != Uri.UriSchemeHttp)
        {
            throw new ConfigException($"gRPC address {address} must be http:// (cleartext HTTP/2)");
        }

        options ??= new GrpcClientOptions();
        var handler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            ConnectTimeout = options.ConnectTimeout,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            KeepAlivePingDelay = TimeSpan.FromSeconds(60),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(20),
            UseProxy = false,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.None,
        };
        if (options.Http2WindowBytes is { } window)
        {
            handler.InitialHttp2StreamWindowSize = window;
        }

        return GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = options.MaxReceiveMessageSize,
            MaxSendMessageSize = options.MaxSendMessageSize,
        });
    }

    public static GrpcChannel Create(string address, GrpcClientOptions? options = null) => Create(new Uri(address), options);
}
