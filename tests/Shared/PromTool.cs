using System.Diagnostics;

namespace K2RL.Tests.Shared;

/// <summary>Prometheus' own checker (Debian's package <c>prometheus</c>, which .ci/run installs) over exposition text.</summary>
public static class PromTool
{
    /// <summary>Runs <c>promtool check metrics</c> on <paramref name="exposition"/>; fails the test with promtool's findings (lint included).</summary>
    public static void CheckMetrics(string exposition)
    {
        string promtool = ExternalTools.Require("promtool", "prometheus");
        var psi = new ProcessStartInfo(promtool, "check metrics")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.StandardInput.Write(exposition);
        p.StandardInput.Close();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(1)), "promtool did not finish");
        string findings = stdout.Result + stderr.Result;
        Assert.True(p.ExitCode == 0 && findings.Trim().Length == 0, $"promtool check metrics exited {p.ExitCode}:\n{findings}\n--- the text:\n{exposition}");
    }

    /// <summary>GET <paramref name="url"/>; the body, after checking the status and Prometheus' text content type.</summary>
    public static string Scrape(Uri url)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        using var response = http.GetAsync(url).GetAwaiter().GetResult();
        Assert.True(response.IsSuccessStatusCode, $"GET {url}: {(int)response.StatusCode}");
        Assert.StartsWith("text/plain; version=0.0.4", response.Content.Headers.ContentType?.ToString());
        return response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
    }

    /// <summary>The value of the sample <paramref name="series"/> (name with its labels as written, e.g. k2rl_x{a="b"}), or null.</summary>
    public static double? Sample(string exposition, string series)
    {
        foreach (string line in exposition.Split('\n'))
        {
            if (line.StartsWith(series + " ", StringComparison.Ordinal))
            {
                return double.Parse(line[(series.Length + 1)..].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return null;
    }
}
