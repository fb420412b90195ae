using K2RL.Common.Rpc;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Prometheus;
using Serilog;

namespace K2RL.Common.Metrics;

/// <summary>
/// The Prometheus exporter of a K2RL process (<c>--metrics HOST:PORT</c>): <c>GET /metrics</c> answers the text exposition
/// format (0.0.4) of one prometheus-net <see cref="CollectorRegistry"/>, over HTTP/1.1 on Kestrel (the host K2RL's gRPC
/// services already use, so port 0 works and the bound address is known). Every other path is 404.
/// <code>
/// var registry = Prometheus.Metrics.NewCustomRegistry();
/// var metrics = new RlPrometheusMetrics(registry);                  // or RolloutWorkerMetrics
/// await using var server = await MetricsServer.StartAsync(HostPort.Parse("127.0.0.1:9400", "--metrics"), registry);
/// </code>
/// </summary>
public sealed class MetricsServer : IAsyncDisposable
{
    /// <summary>The Content-Type of Prometheus' text format.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private readonly WebApplication app;

    private MetricsServer(WebApplication app, Uri address)
    {
        this.app = app;
        Address = address;
    }

    /// <summary>The scrape URL a client on this machine uses, e.g. http://127.0.0.1:9400/metrics.</summary>
    public Uri Address { get; }

    /// <summary>The bound port.</summary>
    public int Port => Address.Port;

    /// <summary>Binds <paramref name="listen"/> and serves <paramref name="registry"/>; a port in use is a K2Exception naming it.</summary>
    public static async Task<MetricsServer> StartAsync(HostPort listen, CollectorRegistry registry, Serilog.ILogger? logger = null, CancellationToken ct = default)
    {
        var (bind, callHost) = GrpcServer.ResolveHost(listen.Host);
        var log = (logger ?? Log.Logger).ForContext<MetricsServer>();
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Logging.ClearProviders().AddSerilog(GrpcServer.WarningsAndAbove(log), dispose: true);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(bind, listen.Port, l => l.Protocols = HttpProtocols.Http1);
        });
        var app = builder.Build();
        app.Run(async context =>
        {
            if (context.Request.Path != "/metrics" || !HttpMethods.IsGet(context.Request.Method))
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                return;
            }

            context.Response.ContentType = ContentType;
            await registry.CollectAndExportAsTextAsync(context.Response.Body, ExpositionFormat.PrometheusText, context.RequestAborted).ConfigureAwait(false);
        });
        try
        {
            await app.StartAsync(ct).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw new K2Exception($"metrics endpoint could not listen on {listen}: {e.Message}", e);
        }

        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
            ?? throw new K2Exception($"metrics endpoint on {listen} reported no bound address");
        var address = new UriBuilder("http", callHost, new Uri(bound).Port, "/metrics").Uri;
        log.Information("Prometheus metrics on {Address}", address);
        return new MetricsServer(app, address);
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await app.StopAsync(timeout.Token).ConfigureAwait(false);
        }
        finally
        {
            await app.DisposeAsync().ConfigureAwait(false);
        }
    }
}
