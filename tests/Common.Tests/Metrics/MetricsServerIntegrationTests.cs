using System.Net;
using System.Net.Sockets;
using K2RL.Common.Metrics;
using K2RL.Common.Rpc;
using K2RL.Tests.Shared;
using Serilog;
using Serilog.Core;
using Serilog.Events;

namespace K2RL.Common.Tests.Metrics;

/// <summary>The Prometheus exporter over real HTTP: what it serves, what promtool says of it, and a port it cannot have.</summary>
public sealed class MetricsServerIntegrationTests
{
    [Fact]
    public async Task ServesTheRegistryAsPrometheusTextThatPromtoolAccepts()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var f = Prometheus.Metrics.WithCustomRegistry(registry);
        f.CreateGauge("k2rl_test_queue_depth", "Items waiting.", "queue").WithLabels("generate").Set(7);
        f.CreateCounter("k2rl_test_items_total", "Items done.").Inc(3);
        var events = new List<LogEvent>();
        using var log = new LoggerConfiguration().MinimumLevel.Verbose().WriteTo.Sink(new ListSink(events)).CreateLogger();
        await using var server = await MetricsServer.StartAsync(HostPort.Parse("127.0.0.1:0", "--metrics"), registry, log);
        Assert.Equal("/metrics", server.Address.AbsolutePath);
        Assert.NotEqual(0, server.Port);

        string text = PromTool.Scrape(server.Address);
        Assert.Equal(7, PromTool.Sample(text, "k2rl_test_queue_depth{queue=\"generate\"}"));
        Assert.Equal(3, PromTool.Sample(text, "k2rl_test_items_total"));
        PromTool.CheckMetrics(text);

        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(new Uri(server.Address, "/other"))).StatusCode);

        // A scrape every few seconds must not write log lines: ASP.NET Core's own logs reach K2RL's only from Warning up.
        lock (events)
        {
            var chatter = events.Where(e => e.Level < LogEventLevel.Warning && e.Properties.TryGetValue("SourceContext", out var c) && c.ToString().Contains("Microsoft."));
            Assert.Empty(chatter.Select(e => e.RenderMessage()));
            Assert.Contains(events, e => e.RenderMessage().Contains("Prometheus metrics on"));
        }
    }

    private sealed class ListSink(List<LogEvent> events) : ILogEventSink
    {
        public void Emit(LogEvent logEvent)
        {
            lock (events)
            {
                events.Add(logEvent);
            }
        }
    }

    [Fact]
    public async Task APortInUseIsAnErrorNamingTheAddress()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        int port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var e = await Assert.ThrowsAsync<K2Exception>(() => MetricsServer.StartAsync(new HostPort("127.0.0.1", port), Prometheus.Metrics.NewCustomRegistry()));
        Assert.Contains($"127.0.0.1:{port}", e.Message);
    }
}
