using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using K2RL.Tests.Shared;

namespace K2RL.Deploy.Tests;

/// <summary>
/// deploy/local.sh's orchestration with a real redis-server and a stand-in k2rl (tests/Deploy.Tests/Fakes/k2rl, the
/// contract's command lines without the work): Redis up with its AOF in the run root, the workers and the trainer
/// started with the contract's flags, readiness through `k2rl job status`, and the stop order on Ctrl-C (the trainer
/// first, then the workers, then Redis). The real trainer and workers need the scale-out branches: after the merge,
/// deploy/local.sh runs with the built k2rl (deploy/README.md).
/// </summary>
public class LocalScriptIntegrationTests
{
    private static readonly string Root = ExternalTools.RepoRoot();
    private static readonly string Fake = Path.Combine(Root, "tests/Deploy.Tests/Fakes/k2rl");

    [Fact]
    public void CtrlCStopsTheTrainerThenTheWorkersThenRedis()
    {
        ExternalTools.Require("redis-server", "redis-server");
        using var dir = new TempFolder();
        int port = FreePort();
        using var run = LocalRun.Start(dir.Path, port, []);
        run.WaitForStderr("local.sh: ready.", TimeSpan.FromSeconds(60));
        Assert.Equal("PONG", RedisCli(port, "ping"));
        Assert.True(Directory.Exists(Path.Combine(dir.Path, "run", "redis", "appendonlydir")), "Redis's AOF is not in RUN_ROOT/redis");
        Assert.Equal("yes", RedisCli(port, "config get appendonly").Split('\n')[1].Trim());

        string[] calls = run.Calls();
        string[] workers = calls.Where(c => c.Contains(" rollout-worker ")).ToArray();
        Assert.Equal(2, workers.Length);
        Assert.All(workers, w => Assert.Contains($"--redis redis://127.0.0.1:{port} --weights shm --listen 127.0.0.1:", w));
        Assert.Contains(workers, w => w.EndsWith("--id local-2 --metrics 127.0.0.1:9402 --shm k2rl-local", StringComparison.Ordinal));
        Assert.Contains(calls, c => c.Contains($" rl --job {dir.Path}/run/rl.yaml --run-dir {dir.Path}/run/rl --resume --metrics 127.0.0.1:9400"));
        Assert.Contains(calls, c => c.Contains($" pretrain --job configs/jobs/pretrain-nano.yaml --run-dir {dir.Path}/run/base --resume"));
        Assert.Contains(calls, c => c.Contains($" job status --run-dir {dir.Path}/run/rl --json"));

        ExternalTools.Run("kill", $"-INT {run.Pid}", TimeSpan.FromSeconds(10));
        Assert.Equal(130, run.WaitForExit(TimeSpan.FromSeconds(60)));
        string[] stops = run.Calls().Where(c => c.Contains(" stop ")).Select(c => c.Split(' ')[^1]).ToArray();
        Assert.Equal(["rl", "worker", "worker"], stops);
        Assert.Throws<InvalidOperationException>(() => RedisCli(port, "ping"));   // Redis stopped too
    }

    [Fact]
    public void TheTrainersExitEndsTheRunWithItsCode()
    {
        ExternalTools.Require("redis-server", "redis-server");
        using var dir = new TempFolder();
        int port = FreePort();
        using var run = LocalRun.Start(dir.Path, port, ["--workers", "1", "--weights", "net", "--max-iterations", "3"], rlSeconds: 2);
        Assert.Equal(0, run.WaitForExit(TimeSpan.FromSeconds(60)));
        string[] calls = run.Calls();
        Assert.Contains(calls, c => c.Contains(" rl ") && c.EndsWith("--max-iterations 3", StringComparison.Ordinal));
        Assert.Contains(calls, c => c.Contains(" rollout-worker ") && c.EndsWith("--id local-1 --metrics 127.0.0.1:9401", StringComparison.Ordinal));
        Assert.Equal(["worker"], calls.Where(c => c.Contains(" stop ")).Select(c => c.Split(' ')[^1]));
        Assert.Contains("\"reason\": \"completed\"", File.ReadAllText(Path.Combine(dir.Path, "run", "logs", "trainer.json")));
        Assert.Throws<InvalidOperationException>(() => RedisCli(port, "ping"));
    }

    private static string RedisCli(int port, string command) => ExternalTools.Run("redis-cli", $"-p {port} {command}", TimeSpan.FromSeconds(10)).Trim() switch
    {
        var s when s.StartsWith("Could not connect", StringComparison.Ordinal) => throw new InvalidOperationException(s),
        var s => s,
    };

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>deploy/local.sh running with the stand-in k2rl, its stderr collected.</summary>
    private sealed class LocalRun : IDisposable
    {
        private readonly Process process;
        private readonly StringBuilder stderr = new();
        private readonly string log;

        private LocalRun(Process process, string log)
        {
            this.process = process;
            this.log = log;
        }

        public int Pid => process.Id;

        public static LocalRun Start(string dir, int port, string[] extra, int? rlSeconds = null)
        {
            // env --default-signal=INT execs bash with SIGINT at its default: a test run started in the background of a
            // non-interactive shell inherits SIGINT ignored, and bash cannot trap a signal ignored on entry (the
            // Ctrl-C test then waits for an exit that never comes). env execs, so the pid is bash's.
            var psi = new ProcessStartInfo("env") { RedirectStandardError = true, RedirectStandardOutput = true, WorkingDirectory = Root };
            foreach (string a in (string[])["--default-signal=INT", "bash", Path.Combine(Root, "deploy/local.sh"), "--k2rl", Fake, "--run-root", Path.Combine(dir, "run"),
                         "--redis-port", port.ToString(), "--ready-timeout", "30", .. extra])
            {
                psi.ArgumentList.Add(a);
            }

            string log = Path.Combine(dir, "calls.log");
            psi.Environment["FAKE_LOG"] = log;
            if (rlSeconds is { } s)
            {
                psi.Environment["FAKE_RL_SECONDS"] = s.ToString();
            }

            var run = new LocalRun(Process.Start(psi)!, log);
            run.process.ErrorDataReceived += (_, e) =>
            {
                lock (run.stderr)
                {
                    run.stderr.AppendLine(e.Data);
                }
            };
            run.process.BeginErrorReadLine();
            run.process.BeginOutputReadLine();
            return run;
        }

        public string[] Calls() => File.Exists(log) ? File.ReadAllLines(log) : [];

        public void WaitForStderr(string text, TimeSpan timeout)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (!Stderr().Contains(text, StringComparison.Ordinal))
            {
                Assert.True(!process.HasExited && DateTime.UtcNow < deadline, $"no '{text}' from deploy/local.sh:\n{Stderr()}");
                Thread.Sleep(100);
            }
        }

        public int WaitForExit(TimeSpan timeout)
        {
            Assert.True(process.WaitForExit(timeout), $"deploy/local.sh did not exit:\n{Stderr()}");
            process.WaitForExit();
            return process.ExitCode;
        }

        private string Stderr()
        {
            lock (stderr)
            {
                return stderr.ToString();
            }
        }

        public void Dispose()
        {
            if (!process.HasExited)
            {
                // SIGTERM: the script's EXIT trap stops its children (SIGKILL would leave them running)
                ExternalTools.Run("kill", $"-TERM {process.Id}", TimeSpan.FromSeconds(10));
                if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
                {
                    process.Kill();
                }
            }

            process.Dispose();
        }
    }
}
