using System.Net;
using System.Net.Sockets;
using K2RL.Common.Metrics;
using K2RL.Common.Rpc;
using K2RL.Tests.Shared;

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
        await using var server = await MetricsServer.StartAsync(HostPort.Parse("127.0.0.1:0", "--metrics"), registry);
        Assert.Equal("/metrics", server.Address.AbsolutePath);
        Assert.NotEqual(0, server.Port);

        string text = PromTool.Scrape(server.Address);
        Assert.Equal(7, PromTool.Sample(text, "k2rl_test_queue_depth{queue=\"generate\"}"));
        Assert.Equal(3, PromTool.Sample(text, "k2rl_test_items_total"));
        PromTool.CheckMetrics(text);

        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(new Uri(server.Address, "/other"))).StatusCode);
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
