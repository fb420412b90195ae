using K2RL.Common.Metrics;
using K2RL.Common.Rpc;
using Serilog;

namespace K2RL.Trainer.Rl;

/// <summary>Where a running RL job answers operators: job control (always) and Prometheus metrics (when asked).</summary>
/// <param name="Control">--control HOST:PORT.</param>
/// <param name="Token">The control token, or null (loopback only).</param>
/// <param name="Metrics">--metrics HOST:PORT, or null for none.</param>
public sealed record RlOperationsOptions(HostPort Control, BearerToken? Token, HostPort? Metrics);

/// <summary>
/// The operations side of a running <see cref="RlJob"/>: its <see cref="JobControlState"/> served by a
/// <see cref="JobControlHost"/>, and, with a metrics address, the <see cref="RlPrometheusMetrics"/> on a
/// <see cref="MetricsServer"/>. Pass <see cref="Control"/> and <see cref="Observe"/>'s observer to
/// <see cref="RlJob.TrainAsync"/>; dispose after it returns (control.json is removed then).
/// </summary>
public sealed class RlOperations : IAsyncDisposable
{
    private readonly JobControlHost host;
    private readonly MetricsServer? metricsServer;
    private readonly RlPrometheusMetrics? metrics;

    private RlOperations(JobControlState control, JobControlHost host, MetricsServer? metricsServer, RlPrometheusMetrics? metrics)
    {
        Control = control;
        this.host = host;
        this.metricsServer = metricsServer;
        this.metrics = metrics;
    }

    public JobControlState Control { get; }

    /// <summary>The job-control address clients on this machine call.</summary>
    public Uri ControlAddress => host.Address;

    /// <summary>The scrape URL, or null without --metrics.</summary>
    public Uri? MetricsAddress => metricsServer?.Address;

    public static async Task<RlOperations> StartAsync(RlJob job, RlOperationsOptions options, ILogger log, CancellationToken ct = default)
    {
        var control = new JobControlState();
        MetricsServer? server = null;
        try
        {
            RlPrometheusMetrics? metrics = null;
            if (options.Metrics is not null)
            {
                var registry = Prometheus.Metrics.NewCustomRegistry();
                metrics = new RlPrometheusMetrics(registry, control, job.WorkerPool);
                server = await MetricsServer.StartAsync(options.Metrics, registry, log, ct).ConfigureAwait(false);
            }

            var host = await JobControlHost.StartAsync(options.Control, options.Token, control, job.WorkerPool, job.Run.Root, log, server?.Address, ct)
                .ConfigureAwait(false);
            return new RlOperations(control, host, server, metrics);
        }
        catch
        {
            if (server is not null)
            {
                await server.DisposeAsync().ConfigureAwait(false);
            }

            control.Dispose();
            throw;
        }
    }

    /// <summary><paramref name="inner"/>, plus the metrics gauges when they are exported.</summary>
    public IRlObserver Observe(IRlObserver inner) => metrics is null ? inner : new MetricsObserver(inner, metrics);

    public async ValueTask DisposeAsync()
    {
        if (metricsServer is not null)
        {
            await metricsServer.DisposeAsync().ConfigureAwait(false);
        }

        await host.DisposeAsync().ConfigureAwait(false);
        Control.Dispose();
    }

    private sealed class MetricsObserver(IRlObserver inner, RlPrometheusMetrics metrics) : IRlObserver
    {
        public void OnStart(long firstIteration, long totalIterations) => inner.OnStart(firstIteration, totalIterations);

        public void OnIteration(RlMetrics m, long totalIterations)
        {
            metrics.Observe(m);
            inner.OnIteration(m, totalIterations);
        }
    }
}
