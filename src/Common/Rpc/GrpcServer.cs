using System.Net;
using Grpc.Health.V1;
using Grpc.HealthCheck;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Serilog;

namespace K2RL.Common.Rpc;

/// <summary>Where a <see cref="GrpcServer"/> listens and what it accepts.</summary>
public sealed record GrpcServerOptions
{
    /// <summary>Parses a <c>--listen HOST:PORT</c> value (port 0: any free one); anything else is a <see cref="ConfigException"/> quoting it.</summary>
    public static (string Host, int Port) ParseListen(string text)
    {
        int colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), out int port) || port is < 0 or > 65535)
        {
            throw new ConfigException($"--listen '{text}' is not HOST:PORT");
        }

        return (text[..colon], port);
    }

    /// <summary>The largest message either side of K2RL's services accepts by default: gRPC's usual 4 MiB.</summary>
    public const int DefaultMaxMessageSize = 4 * 1024 * 1024;

    /// <summary>The address to bind: an IP literal, "localhost" or "*" (all interfaces). Loopback unless told otherwise.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>The port; 0 picks a free one, reported by <see cref="GrpcServer.Port"/>.</summary>
    public int Port { get; init; }

    /// <summary>The largest request message accepted; a larger one ends its call with RESOURCE_EXHAUSTED.</summary>
    public int MaxReceiveMessageSize { get; init; } = DefaultMaxMessageSize;

    /// <summary>
    /// The largest response message a handler may send (a larger one ends its call with RESOURCE_EXHAUSTED); null for
    /// no limit: the receiving client enforces its own.
    /// </summary>
    public int? MaxSendMessageSize { get; init; }

    /// <summary>How long stopping waits for calls in flight (whose tokens have fired) before closing connections.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// HTTP/2 receive windows (connection and each stream) in bytes; null keeps Kestrel's (128 KiB / 96 KiB). Services that
    /// take large streamed messages (the checkpoint engine's buckets) raise them so a sender is not held to a window
    /// update per 96 KiB.
    /// </summary>
    public int? Http2WindowBytes { get; init; }

    /// <summary>Where handler failures and Kestrel warnings go; Serilog's global logger when null.</summary>
    public Serilog.ILogger? Logger { get; init; }
}

/// <summary>
/// The one host of K2RL's gRPC services: Grpc.AspNetCore on Kestrel, HTTP/2 cleartext (h2c, prior knowledge), with the
/// standard <c>grpc.health.v1.Health</c> service. A new service is one more <see cref="GrpcServerBuilder.AddService{TService}"/>:
/// <code>
/// await using var server = await GrpcServer.Create(new GrpcServerOptions { Port = 0 })
///     .AddService(new GymService(registry))     // a subclass of the generated Gym.GymBase
///     .StartAsync();
/// var client = new Gym.GymClient(GrpcChannels.Create(server.Address));
/// </code>
/// </summary>
public sealed class GrpcServer : IAsyncDisposable
{
    private readonly WebApplication app;
    private readonly CancellationTokenSource stopping;
    private readonly TimeSpan shutdownTimeout;
    private int stopped;

    private GrpcServer(WebApplication app, CancellationTokenSource stopping, HealthServiceImpl health, TimeSpan shutdownTimeout, Uri address)
    {
        this.app = app;
        this.stopping = stopping;
        this.shutdownTimeout = shutdownTimeout;
        Health = health;
        Address = address;
    }

    /// <summary>The address a client on this machine calls, e.g. http://127.0.0.1:5001/.</summary>
    public Uri Address { get; }

    /// <summary>The bound port.</summary>
    public int Port => Address.Port;

    /// <summary>The standard health service; "" (the whole server) is SERVING from the start. Services mark themselves NOT_SERVING here.</summary>
    public HealthServiceImpl Health { get; }

    public static GrpcServerBuilder Create(GrpcServerOptions? options = null) => new(options ?? new GrpcServerOptions());

    internal static async Task<GrpcServer> StartAsync(GrpcServerOptions options, IReadOnlyList<Action<IServiceCollection>> services,
        IReadOnlyList<Action<IEndpointRouteBuilder>> endpoints, CancellationToken ct)
    {
        if (options.MaxReceiveMessageSize < 0 || options.MaxSendMessageSize < 0)
        {
            throw new ArgumentException($"message size limits must be non-negative: receive {options.MaxReceiveMessageSize}, send {options.MaxSendMessageSize}");
        }

        var (bindAddress, callHost) = ResolveHost(options.Host);
        var logger = (options.Logger ?? Log.Logger).ForContext<GrpcServer>();
        var health = new HealthServiceImpl();
        health.SetStatus("", HealthCheckResponse.Types.ServingStatus.Serving);
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        // ASP.NET Core's own logs go to K2RL's Serilog logger (stderr), warnings and above: stdout stays the command's.
        builder.Logging.ClearProviders().AddSerilog(WarningsAndAbove(logger), dispose: true);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            // Streams last as long as their calls; gRPC enforces its own message limits.
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.MinRequestBodyDataRate = null;
            kestrel.Limits.MinResponseDataRate = null;
            if (options.Http2WindowBytes is { } window)
            {
                kestrel.Limits.Http2.InitialConnectionWindowSize = window;
                kestrel.Limits.Http2.InitialStreamWindowSize = window;
            }

            kestrel.Listen(bindAddress, options.Port, listen => listen.Protocols = HttpProtocols.Http2);
        });
        builder.Services.AddRouting();
        builder.Services.AddGrpc(grpc =>
        {
            grpc.MaxReceiveMessageSize = options.MaxReceiveMessageSize;
            grpc.MaxSendMessageSize = options.MaxSendMessageSize;
            // The services are K2RL's own, bound to loopback unless configured otherwise: a handler's exception type
            // and message reach the caller (UNKNOWN, "Exception was thrown by handler. TYPE: message").
            grpc.EnableDetailedErrors = true;
        });
        builder.Services.AddSingleton(health);
        foreach (var add in services)
        {
            add(builder.Services);
        }

        var built = builder.Build();
        var stopping = new CancellationTokenSource();
        built.UseRouting();
        // Stopping the server fires every call's token (ServerCallContext.CancellationToken is RequestAborted).
        built.Use(async (context, next) =>
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, stopping.Token);
            context.RequestAborted = linked.Token;
            await next(context).ConfigureAwait(false);
        });
        built.MapGrpcService<HealthServiceImpl>();
        foreach (var map in endpoints)
        {
            map(built);
        }

        try
        {
            await built.StartAsync(ct).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await built.DisposeAsync().ConfigureAwait(false);
            stopping.Dispose();
            throw new K2Exception($"gRPC server could not listen on {options.Host}:{options.Port}: {e.Message}", e);
        }

        var bound = built.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
            ?? throw new K2Exception($"gRPC server on {options.Host}:{options.Port} reported no bound address");
        var address = new UriBuilder("http", callHost, new Uri(bound).Port).Uri;
        logger.Information("gRPC server listening on {Address}", bound);
        return new GrpcServer(built, stopping, health, options.ShutdownTimeout, address);
    }

    /// <summary>Stops: cancels the calls in flight, waits up to <see cref="GrpcServerOptions.ShutdownTimeout"/>, closes.</summary>
    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref stopped, 1) != 0)
        {
            return;
        }

        await stopping.CancelAsync().ConfigureAwait(false);
        using var timeout = new CancellationTokenSource(shutdownTimeout);
        try
        {
            await app.StopAsync(timeout.Token).ConfigureAwait(false);
        }
        finally
        {
            await app.DisposeAsync().ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        stopping.Dispose();
    }

    /// <summary>
    /// A logger passing <paramref name="logger"/> only warnings and above: for ASP.NET Core's own logs (a line per
    /// request otherwise). MEL's SetMinimumLevel does not do it: AddSerilog adds a Trace filter for its provider.
    /// </summary>
    internal static Serilog.ILogger WarningsAndAbove(Serilog.ILogger logger) =>
        new LoggerConfiguration().MinimumLevel.Warning().WriteTo.Logger(logger).CreateLogger();

    /// <summary>The address to bind for a host given on the command line, and the one a client on this machine calls (any
    /// K2RL listener: gRPC, metrics, the checkpoint engine's data lane).</summary>
    public static (IPAddress Bind, string CallHost) ResolveHost(string host)
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

        throw new ConfigException($"gRPC server host '{host}' is not an IP address, 'localhost' or '*'");
    }
}

/// <summary>Collects the services of a <see cref="GrpcServer"/> before it starts.</summary>
public sealed class GrpcServerBuilder
{
    private readonly GrpcServerOptions options;
    private readonly List<Action<IServiceCollection>> services = [];
    private readonly List<Action<IEndpointRouteBuilder>> endpoints = [];

    internal GrpcServerBuilder(GrpcServerOptions options) => this.options = options;

    /// <summary>Serves <paramref name="service"/> (a subclass of a generated <c>*Base</c>): one instance for every call.</summary>
    public GrpcServerBuilder AddService<TService>(TService service)
        where TService : class
    {
        services.Add(s => s.AddSingleton(service));
        endpoints.Add(e => e.MapGrpcService<TService>());
        return this;
    }

    /// <summary>Binds and starts serving; the server's <see cref="GrpcServer.Address"/> is set when it returns.</summary>
    public Task<GrpcServer> StartAsync(CancellationToken ct = default) => GrpcServer.StartAsync(options, services, endpoints, ct);
}
