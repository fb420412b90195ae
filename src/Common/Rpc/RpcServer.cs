using System.Net;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Serilog;

namespace K2RL.Common.Rpc;

/// <summary>Where and how an <see cref="RpcServer"/> listens.</summary>
public sealed record RpcServerOptions
{
    /// <summary>The address to bind: an IP literal, "localhost" or "*" (all interfaces). Loopback unless told otherwise.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>The port; 0 picks a free one, reported by <see cref="RpcServer.Port"/>.</summary>
    public int Port { get; init; }

    /// <summary>The largest request message accepted; larger ones end the call with RESOURCE_EXHAUSTED.</summary>
    public int MaxReceiveMessageSize { get; init; } = GrpcWire.DefaultMaxReceiveMessageSize;

    /// <summary>The largest response message a handler may send; larger ones end the call with RESOURCE_EXHAUSTED.</summary>
    public int MaxSendMessageSize { get; init; } = int.MaxValue;

    /// <summary>How long stopping waits for calls in flight (whose tokens have fired) before closing connections.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Where handler failures and Kestrel warnings go; Serilog's global logger when null.</summary>
    public Serilog.ILogger? Logger { get; init; }
}

/// <summary>A service that puts its methods on a server.</summary>
public interface IRpcService
{
    void Register(RpcServer server);
}

/// <summary>
/// A gRPC server over Kestrel HTTP/2 cleartext (h2c, prior knowledge). Register methods, then
/// <see cref="StartAsync"/>; registration is closed once started.
/// </summary>
public sealed partial class RpcServer : IAsyncDisposable
{
    private readonly Dictionary<string, Func<ServerCall, Task>> methods = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource stopping = new();
    private WebApplication? app;

    public RpcServer(RpcServerOptions? options = null)
    {
        Options = options ?? new RpcServerOptions();
        if (Options.MaxReceiveMessageSize < 0 || Options.MaxSendMessageSize < 0)
        {
            throw new ArgumentException($"message size limits must be non-negative: receive {Options.MaxReceiveMessageSize}, send {Options.MaxSendMessageSize}");
        }

        Logger = (Options.Logger ?? Log.Logger).ForContext<RpcServer>();
    }

    public RpcServerOptions Options { get; }

    /// <summary>The bound port, once started.</summary>
    public int Port { get; private set; }

    /// <summary>The address a client on this machine calls, e.g. http://127.0.0.1:5001/, once started.</summary>
    public Uri Address { get; private set; } = new("http://127.0.0.1/");

    /// <summary>The registered method names.</summary>
    public IReadOnlyCollection<string> Methods => methods.Keys;

    internal Serilog.ILogger Logger { get; }

    public RpcServer AddService(IRpcService service)
    {
        service.Register(this);
        return this;
    }

    public RpcServer AddUnary<TRequest, TResponse>(string fullName, MessageParser<TRequest> requestParser, UnaryHandler<TRequest, TResponse> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        return Register(fullName, async call =>
        {
            var request = await call.ReadSingleAsync(requestParser).ConfigureAwait(false);
            await call.WriteResponseAsync(await handler(request, call.Context).ConfigureAwait(false)).ConfigureAwait(false);
        });
    }

    public RpcServer AddServerStreaming<TRequest, TResponse>(
        string fullName, MessageParser<TRequest> requestParser, ServerStreamingHandler<TRequest, TResponse> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        return Register(fullName, async call =>
        {
            var request = await call.ReadSingleAsync(requestParser).ConfigureAwait(false);
            await handler(request, call.CreateWriter<TResponse>(), call.Context).ConfigureAwait(false);
        });
    }

    public RpcServer AddClientStreaming<TRequest, TResponse>(
        string fullName, MessageParser<TRequest> requestParser, ClientStreamingHandler<TRequest, TResponse> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        return Register(fullName, async call =>
        {
            var response = await handler(call.ReadAll(requestParser), call.Context).ConfigureAwait(false);
            await call.WriteResponseAsync(response).ConfigureAwait(false);
        });
    }

    public RpcServer AddDuplex<TRequest, TResponse>(
        string fullName, MessageParser<TRequest> requestParser, DuplexHandler<TRequest, TResponse> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        return Register(fullName, call => handler(call.ReadAll(requestParser), call.CreateWriter<TResponse>(), call.Context));
    }

    public RpcServer AddUnary<TRequest, TResponse>(RpcMethod<TRequest, TResponse> method, UnaryHandler<TRequest, TResponse> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse> =>
        AddUnary(method.FullName, method.RequestParser, handler);

    public RpcServer AddServerStreaming<TRequest, TResponse>(RpcMethod<TRequest, TResponse> method, ServerStreamingHandler<TRequest, TResponse> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse> =>
        AddServerStreaming(method.FullName, method.RequestParser, handler);

    public RpcServer AddClientStreaming<TRequest, TResponse>(RpcMethod<TRequest, TResponse> method, ClientStreamingHandler<TRequest, TResponse> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse> =>
        AddClientStreaming(method.FullName, method.RequestParser, handler);

    public RpcServer AddDuplex<TRequest, TResponse>(RpcMethod<TRequest, TResponse> method, DuplexHandler<TRequest, TResponse> handler)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse> =>
        AddDuplex(method.FullName, method.RequestParser, handler);

    /// <summary>Binds and starts serving; <see cref="Port"/> and <see cref="Address"/> are set when it returns.</summary>
    public async Task StartAsync(CancellationToken ct = default)
    {
        if (app is not null)
        {
            throw new InvalidOperationException("the RPC server is already started");
        }

        var (bindAddress, callHost) = ResolveHost(Options.Host);
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Logging.AddSerilog(Logger, dispose: false).SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            // Streams last as long as their calls; gRPC enforces its own message limit.
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.MinRequestBodyDataRate = null;
            kestrel.Limits.MinResponseDataRate = null;
            kestrel.Listen(bindAddress, Options.Port, listen => listen.Protocols = HttpProtocols.Http2);
        });
        var built = builder.Build();
        built.Run(DispatchAsync);
        try
        {
            await built.StartAsync(ct).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await built.DisposeAsync().ConfigureAwait(false);
            throw new K2Exception($"RPC server could not listen on {Options.Host}:{Options.Port}: {e.Message}", e);
        }

        app = built;
        var addresses = built.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>();
        string bound = addresses?.Addresses.FirstOrDefault()
            ?? throw new K2Exception($"RPC server on {Options.Host}:{Options.Port} reported no bound address");
        Port = new Uri(bound).Port;
        Address = new UriBuilder("http", callHost, Port).Uri;
        Logger.Information("RPC server listening on {Address} ({Count} methods)", bound, methods.Count);
    }

    /// <summary>Stops: cancels the calls in flight, waits up to <see cref="RpcServerOptions.ShutdownTimeout"/>, closes.</summary>
    public async Task StopAsync()
    {
        var running = Interlocked.Exchange(ref app, null);
        if (running is null)
        {
            return;
        }

        await stopping.CancelAsync().ConfigureAwait(false);
        using var timeout = new CancellationTokenSource(Options.ShutdownTimeout);
        try
        {
            await running.StopAsync(timeout.Token).ConfigureAwait(false);
        }
        finally
        {
            await running.DisposeAsync().ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        stopping.Dispose();
    }

    private RpcServer Register(string fullName, Func<ServerCall, Task> run)
    {
        RpcMethod.CheckName(fullName);
        if (app is not null)
        {
            throw new InvalidOperationException($"cannot add {fullName}: the RPC server is already started");
        }

        if (!methods.TryAdd(fullName, run))
        {
            throw new ArgumentException($"RPC method {fullName} is registered twice", nameof(fullName));
        }

        return this;
    }

    private static (IPAddress Bind, string CallHost) ResolveHost(string host)
    {
        if (host is "*" or "0.0.0.0")
        {
            return (IPAddress.Any, "127.0.0.1");
        }

        if (host is "::")
        {
            return (IPAddress.IPv6Any, "::1");
        }

        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase))
        {
            return (IPAddress.Loopback, "127.0.0.1");
        }

        if (IPAddress.TryParse(host, out var ip))
        {
            return (ip, host);
        }

        throw new ConfigException($"RPC server host '{host}' is not an IP address, 'localhost' or '*'");
    }
}
