using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using K2RL.Tests.Shared;

namespace K2RL.Cli.Tests;

/// <summary>
/// <c>k2rl rl --metrics</c> on a real running job: the scraped text passes <c>promtool check metrics</c>, and a real
/// Prometheus server (Debian's) scraping it every second sees the target up and the job's k2rl_ series.
/// </summary>
public sealed class RlPrometheusIntegrationTests
{
    [Fact]
    public async Task ARealPrometheusScrapesTheRunningJob()
    {
        string prometheus = ExternalTools.Require("prometheus", "prometheus");
        using var jobs = new RlTestJobs(iterations: 1000, every: 1000);
        string run = jobs.RunDir("scraped");
        using var p = ChildK2rl.Start("rl", "--job", jobs.JobPath, "--run-dir", run, "--metrics", "127.0.0.1:0");
        JobControlIntegrationTests.WaitForControl(p, run);
        var metrics = new Uri(JsonNode.Parse(File.ReadAllText(Path.Combine(run, "control.json")))!["metrics"]!.GetValue<string>());
        ChildK2rl.WaitForMetrics(p, run, 1);

        string text = PromTool.Scrape(metrics);
        PromTool.CheckMetrics(text);
        Assert.True(PromTool.Sample(text, "k2rl_rl_iteration") >= 1, text);
        Assert.True(PromTool.Sample(text, "k2rl_rl_generated_tokens_total") > 0, text);
        Assert.NotNull(PromTool.Sample(text, "k2rl_rl_env_reward_mean{env=\"arithmetic\"}"));
        Assert.NotNull(PromTool.Sample(text, "k2rl_rl_phase_seconds{phase=\"generate\"}"));
        Assert.Equal(1, PromTool.Sample(text, "k2rl_rl_job_state{state=\"running\"}"));

        int port = FreePort();
        string config = Path.Combine(jobs.Dir, "prometheus.yml");
        File.WriteAllText(config, $"""
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: k2rl-rl
                static_configs:
                  - targets: ['127.0.0.1:{metrics.Port}']
            """);
        var psi = new ProcessStartInfo(prometheus) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { $"--config.file={config}", $"--storage.tsdb.path={Path.Combine(jobs.Dir, "tsdb")}", $"--web.listen-address=127.0.0.1:{port}" })
        {
            psi.ArgumentList.Add(a);
        }

        using var server = Process.Start(psi)!;
        var serverLog = new System.Text.StringBuilder();
        server.OutputDataReceived += (_, e) => { lock (serverLog) { serverLog.AppendLine(e.Data); } };
        server.ErrorDataReceived += (_, e) => { lock (serverLog) { serverLog.AppendLine(e.Data); } };
        server.BeginOutputReadLine();
        server.BeginErrorReadLine();
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            var up = await Query(http, port, "up", v => v == 1, server, serverLog);
            Assert.Equal($"127.0.0.1:{metrics.Port}", up["metric"]!["instance"]!.GetValue<string>());
            await Query(http, port, "k2rl_rl_iteration", v => v >= 1, server, serverLog);
            await Query(http, port, "k2rl_rl_job_state{state=\"running\"}", v => v == 1, server, serverLog);
        }
        finally
        {
            server.Kill();
            server.WaitForExit();
        }

        var (code, _, err) = await JobControlIntegrationTests.Job("stop", run);   // loopback, no token configured: none needed
        Assert.True(code == 0, err);
        Assert.Equal("stopped", JsonNode.Parse(ChildK2rl.Finish(p))!["reason"]!.GetValue<string>());
    }

    /// <summary>Polls Prometheus' HTTP API until the instant query has a sample satisfying <paramref name="ok"/>; returns that sample.</summary>
    private static async Task<JsonNode> Query(HttpClient http, int port, string query, Func<double, bool> ok, Process server, System.Text.StringBuilder log)
    {
        var deadline = DateTime.UtcNow.AddMinutes(2);
        string last = "";
        while (DateTime.UtcNow < deadline)
        {
            Assert.False(server.HasExited, $"prometheus exited {(server.HasExited ? server.ExitCode : 0)}:\n{log}");
            try
            {
                last = await http.GetStringAsync($"http://127.0.0.1:{port}/api/v1/query?query={Uri.EscapeDataString(query)}");
                var result = JsonNode.Parse(last)!["data"]?["result"]?.AsArray();
                var sample = result?.FirstOrDefault(r => ok(double.Parse(r!["value"]![1]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture)));
                if (sample is not null)
                {
                    return sample;
                }
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }

            await Task.Delay(250);
        }

        Assert.Fail($"Prometheus never answered {query} as expected; last answer: {last}\n{log}");
        return null!;
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
