using System.Diagnostics;

namespace K2RL.Cli.Tests;

/// <summary>The built k2rl as a child process, for signal and kill -9 tests.</summary>
internal static class ChildK2rl
{
    public static Process Start(params string[] args) => Start(args, stderrLine: null);

    /// <summary>Starts the child; each line it writes to stderr goes to <paramref name="stderrLine"/> (or is dropped).</summary>
    public static Process Start(IEnumerable<string> args, Action<string>? stderrLine)
    {
        var psi = new ProcessStartInfo(Environment.ProcessPath!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "k2rl.dll"));
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        var p = Process.Start(psi)!;
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                stderrLine?.Invoke(e.Data);
            }
        };
        p.BeginErrorReadLine();
        return p;
    }

    public static string Finish(Process p)
    {
        string stdout = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(5)), "the child did not finish");
        Assert.True(p.ExitCode == 0, $"exit code {p.ExitCode}: {stdout}");
        return stdout;
    }

    /// <summary>Waits (polling the file, no time assertions) until the child has written at least <paramref name="lines"/> metrics lines.</summary>
    public static void WaitForMetrics(Process p, string runDir, int lines)
    {
        string metrics = Path.Combine(runDir, "metrics.jsonl");
        var deadline = DateTime.UtcNow.AddMinutes(5);
        while (DateTime.UtcNow < deadline && !p.HasExited)
        {
            if (File.Exists(metrics) && File.ReadLines(metrics).Count() >= lines)
            {
                return;
            }

            Thread.Sleep(10);
        }

        Assert.Fail($"the child exited or stalled before writing {lines} metrics lines");
    }
}
