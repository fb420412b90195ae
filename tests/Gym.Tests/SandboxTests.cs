using System.Diagnostics;
using K2RL.Gym;
using K2RL.Gym.Sandbox;
using K2RL.Tests.Shared;

namespace K2RL.Gym.Tests;

/// <summary>The real bubblewrap sandbox under benign and hostile programs. Runs in parallel with the other classes.</summary>
public class SandboxTests
{
    private static readonly BubblewrapSandbox Sandbox = Create();

    private static BubblewrapSandbox Create()
    {
        ExternalTools.Require("bwrap", "bubblewrap");
        return new BubblewrapSandbox();
    }

    private static readonly SandboxLimits Tight = new()
    {
        WallTime = TimeSpan.FromSeconds(3),
        CpuSeconds = 1,
        MemoryBytes = 256L << 20,
        MaxProcesses = 8,
    };

    private static Task<SandboxResult> Run(string program, string stdin = "", SandboxLimits? limits = null) =>
        Sandbox.RunAsync(new SandboxRequest("python3", program, stdin) { Limits = limits ?? Tight }).AsTask();

    [Fact]
    public async Task RunsATrivialProgramAsAnUnprivilegedUser()
    {
        var r = await Run("import os, sys\nprint(sys.stdin.read().upper(), os.getuid() != 0, os.getcwd())", "hello");
        Assert.True(SandboxStatus.Ok == r.Status, $"{r.Status} {r.ExitCode} {r.Stderr}");
        Assert.Equal("HELLO True /work", r.Stdout.Trim().Replace("\n", ""));
    }

    [Fact]
    public async Task ProgramsSeeAnOrdinaryScriptEnvironment()
    {
        var r = await Run("import sys, json\nprint(__name__, __file__, sys.argv, json.dumps([1]))\nexit(3)");
        Assert.Equal(SandboxStatus.NonZeroExit, r.Status);
        Assert.Equal(3, r.ExitCode);
        Assert.Equal("__main__ /code/main ['/code/main'] [1]", r.Stdout.Trim());
        var q = await Run("quit()");
        Assert.Equal(SandboxStatus.Ok, q.Status);
    }

    [Fact]
    public async Task ReportsNonZeroExitAndStderr()
    {
        var r = await Run("raise SystemExit('boom')");
        Assert.Equal(SandboxStatus.NonZeroExit, r.Status);
        Assert.Contains("boom", r.Stderr);
    }

    [Fact]
    public async Task InfiniteLoopIsStoppedByTheCpuLimit()
    {
        var watch = Stopwatch.StartNew();
        var r = await Run("while True:\n    pass\n");
        Assert.False(r.Succeeded);
        Assert.True(r.Status is SandboxStatus.Signaled or SandboxStatus.TimedOut, r.Status.ToString());
        // Killed at 1 CPU-second or, on a busy machine, at the 3 s wall limit. The margins allow for a machine
        // whose cores are shared with parallel test assemblies (kill and reap can wait for the scheduler);
        // a loop that ran on unchecked would blow through them.
        Assert.True(r.Elapsed < Tight.WallTime + TimeSpan.FromSeconds(5), r.Elapsed.ToString());
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), watch.Elapsed.ToString());
    }

    [Fact]
    public async Task SleepingForeverIsStoppedByTheWallLimit()
    {
        var watch = Stopwatch.StartNew();
        var r = await Run("import time\ntime.sleep(60)", limits: Tight with { WallTime = TimeSpan.FromSeconds(1) });
        Assert.True(SandboxStatus.TimedOut == r.Status, $"{r.Status} {r.ExitCode} {r.Stderr} {r.Elapsed}");
        // The status is the event; the bound only has to tell "cut at the 1 s limit" from "slept its 60 s",
        // so it is half of that: room for a shared machine under load, not a speed test.
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), watch.Elapsed.ToString());
    }

    [Fact]
    public async Task UnboundedAllocationFails()
    {
        var r = await Run("a = []\nwhile True:\n    a.append(bytearray(50 * 1024 * 1024))\n");
        Assert.False(r.Succeeded);
        Assert.Contains("MemoryError", r.Stderr);
    }

    [Fact]
    public async Task NetworkIsUnreachable()
    {
        var r = await Run("import socket\ns = socket.create_connection(('1.1.1.1', 80), timeout=2)\nprint('connected')");
        Assert.False(r.Succeeded);
        Assert.DoesNotContain("connected", r.Stdout);
        Assert.Contains("OSError", r.Stderr);
    }

    [Fact]
    public async Task WritesOutsideTheWorkDirectoryFailAndTheHostIsUntouched()
    {
        string hostFile = Path.Combine(Path.GetTempPath(), "k2rl-escape-" + Guid.NewGuid().ToString("N"));
        string program = $$"""
            import os
            ok = []
            open('/work/inside.txt', 'w').write('fine')
            for path in ['{{hostFile}}', '/usr/escape', '/code/escape', '/escape', '/etc/passwd']:
                try:
                    open(path, 'w').write('x')
                    ok.append(path)
                except OSError:
                    pass
            if ok:
                print('escaped', ok)
                raise SystemExit(0)
            raise SystemExit('all writes outside /work refused')
            """;
        var r = await Run(program);
        Assert.Equal(SandboxStatus.NonZeroExit, r.Status);
        Assert.Contains("all writes outside /work refused", r.Stderr);
        Assert.False(File.Exists(hostFile));
    }

    [Fact]
    public async Task ForkBombIsContainedAndOtherRunsAreUnaffected()
    {
        string bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
        var bombRun = Run(bomb, limits: Tight with { WallTime = TimeSpan.FromSeconds(2) });
        await Task.Delay(300);
        var benign = await Run("print(sum(range(10)))");
        Assert.True(SandboxStatus.Ok == benign.Status, $"{benign.Status} {benign.ExitCode} {benign.Stderr}");
        Assert.Equal("45", benign.Stdout.Trim());
        var r = await bombRun;
        Assert.False(r.Succeeded);

        // The host can still start processes, and nothing of the bomb is left running.
        Assert.Equal("ok", ExternalTools.Run("/bin/echo", "ok", TimeSpan.FromSeconds(5)).Trim());
        await Task.Delay(200);
        int leftovers = Directory.GetDirectories("/proc").Count(d =>
        {
            try
            {
                return File.ReadAllText(Path.Combine(d, "status")).Split('\n')
                    .Any(l => l.StartsWith("Uid:", StringComparison.Ordinal) && int.Parse(l.Split('\t')[1]) >= 200_000 &&
                              int.Parse(l.Split('\t')[1]) < 300_000) &&
                    File.ReadAllText(Path.Combine(d, "cmdline")).Contains("python3");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
            {
                return false;
            }
        });
        Assert.Equal(0, leftovers);
    }

    [Fact]
    public async Task OutputFloodIsCut()
    {
        var r = await Run("while True:\n    print('x' * 10000)\n", limits: Tight with { MaxOutputBytes = 100_000 });
        Assert.False(r.Succeeded);
        Assert.True(r.Stdout.Length <= 100_000);
    }

    [Fact]
    public async Task UnknownInterpreterIsASandboxError()
    {
        var r = await Sandbox.RunAsync(new SandboxRequest("cobol", "DISPLAY 'HI'."));
        Assert.Equal(SandboxStatus.SandboxError, r.Status);
        Assert.Contains("unknown interpreter", r.Stderr);
    }

    [Fact]
    public async Task CodeEnvironmentScoresReferenceProgramsAndRejectsHostileOnes()
    {
        var registry = GymRegistry.CreateDefault(() => Sandbox);
        var rewards = await Task.WhenAll(Enumerable.Range(0, 6).Select(async seed =>
        {
            await using var env = (TaskEnvironment)registry.CreateEnvironment("code");
            await env.ResetAsync(seed, new ResetOptions { Difficulty = 3 });
            var step = await env.StepAsync("Here is my program:\n" + env.Task!.Solution);
            Assert.True(step.Info.Correct, env.Task.Prompt + "\n" + step.Info.Data["reason"]);
            return step.Reward;
        }));
        Assert.All(rewards, r => Assert.Equal(1.0, r));

        string[] hostile =
        [
            "```python\nimport os\nwhile True:\n    os.fork()\n```",
            "```python\nx = ' ' * (10 ** 11)\n```",
            "```python\nwhile True: pass\n```",
            "```python\nimport socket; socket.create_connection(('8.8.8.8', 53), timeout=1)\n```",
            "```python\nopen('/usr/pwned', 'w')\n```",
        ];
        var scores = await Task.WhenAll(hostile.Select(async program =>
        {
            await using var env = (TaskEnvironment)registry.CreateEnvironment("code");
            await env.ResetAsync(1);
            var step = await env.StepAsync(program);
            return (step.Reward, step.Info.Correct, Reason: step.Info.Data["reason"]);
        }));
        Assert.All(scores, s => Assert.Equal((0.0, (bool?)false), (s.Reward, s.Correct)));
    }
}
