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
    public async Task UnboundedAllocationIsStopped()
    {
        // RLIMIT_AS turns the allocation into a MemoryError; on a machine where pages fault in slowly the CPU or
        // wall limit can kill it first. Either way the sandbox guarantees the same: the program is stopped, and
        // the host is fine (the next run works).
        var r = await Run("a = []\nwhile True:\n    a.append(bytearray(50 * 1024 * 1024))\n");
        Assert.True(r.Status is SandboxStatus.Signaled or SandboxStatus.TimedOut ||
                    (r.Status == SandboxStatus.NonZeroExit && r.Stderr.Contains("MemoryError", StringComparison.Ordinal)),
            $"{r.Status} {r.ExitCode} {r.Stderr}");
        var next = await Run("print(6 * 7)");
        Assert.True(SandboxStatus.Ok == next.Status, $"{next.Status} {next.ExitCode} {next.Stderr}");
        Assert.Equal("42", next.Stdout.Trim());
    }

    /// <summary>
    /// Every way a program could hold memory outside its address space and /work: a nested user namespace with a
    /// tmpfs mounted in it (by system call and with util-linux's <c>unshare -Urm</c>), memfd and SysV shared
    /// memory. Each tries to store 128 MiB against a 32 MiB work directory; the program prints what it managed.
    /// </summary>
    [Fact]
    public async Task NestedNamespacesAndSharedMemoryCannotEscapeTheWorkLimit()
    {
        const string program = """
            import ctypes, os, subprocess, threading
            libc = ctypes.CDLL(None, use_errno=True)
            CHUNK, TOTAL = 1 << 20, 128 << 20

            def fill(fd, most=TOTAL):
                buf, n = b'x' * CHUNK, 0
                try:
                    while n < most:
                        n += os.write(fd, buf)
                except OSError:
                    pass
                return n

            def fill_folder(d):
                # Files of 16 MiB: RLIMIT_FSIZE (32 MiB) caps each file, not their sum.
                return sum(fill(os.open(f'{d}/f{i}', os.O_WRONLY | os.O_CREAT), 16 << 20) for i in range(8))

            def report(name, ok, why=''):
                print(name, 'escaped' if ok else 'refused', why)

            # 1. unshare(CLONE_NEWUSER | CLONE_NEWNS), root in it, then a tmpfs with no size limit.
            uid, gid = os.getuid(), os.getgid()
            if libc.unshare(0x10000000 | 0x00020000) == 0:
                for f, text in [('setgroups', 'deny'), ('uid_map', f'0 {uid} 1'), ('gid_map', f'0 {gid} 1')]:
                    with open('/proc/self/' + f, 'w') as m:
                        m.write(text)
                os.makedirs('/work/m', exist_ok=True)
                ok = libc.mount(b'none', b'/work/m', b'tmpfs', 0, b'size=1g') == 0
                n = fill_folder('/work/m') if ok else 0
                report('unshare', n > 32 << 20, f'{n} bytes')
            else:
                report('unshare', False, os.strerror(ctypes.get_errno()))

            # 2. the same with the unshare(1) tool, in a child process.
            p = subprocess.run(['/usr/bin/unshare', '-Urm', '/bin/sh', '-c',
                                'mount -t tmpfs -o size=1g none /work && for i in 1 2 3 4 5 6 7 8; do '
                                'head -c 16777216 /dev/zero > /work/f$i || exit 1; done && echo stored'],
                               capture_output=True, text=True)
            report('unshare(1)', 'stored' in p.stdout, p.stderr.strip()[:80])

            # 3. memfd_create: anonymous shmem files, never mapped.
            try:
                fds = [os.memfd_create('m') for _ in range(8)]
                report('memfd', sum(fill(fd) for fd in fds) > 32 << 20)
            except OSError as e:
                report('memfd', False, e.strerror)

            # 4. SysV shared memory: a segment outlives its mapping.
            libc.shmget.restype = ctypes.c_int
            report('shmget', libc.shmget(0, ctypes.c_size_t(TOTAL), 0o1600) >= 0, os.strerror(ctypes.get_errno()))

            # 5. /work itself holds at most its limit.
            n = fill_folder('/work')
            report('work', n > 32 << 20, f'{n} bytes')

            # Ordinary programs still start threads and child processes (clone3 falls back to clone).
            t = threading.Thread(target=lambda: None)
            t.start()
            t.join()
            print('child', subprocess.run(['/bin/echo', 'ok'], capture_output=True, text=True).stdout.strip())
            """;
        var r = await Run(program, limits: Tight with { WallTime = TimeSpan.FromSeconds(20), CpuSeconds = 5 });
        Assert.True(SandboxStatus.Ok == r.Status, $"{r.Status} {r.ExitCode} {r.Stdout} {r.Stderr}");
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        foreach (string attempt in (string[])["unshare ", "unshare(1) ", "memfd ", "shmget ", "work "])
        {
            string line = Assert.Single(lines, l => l.StartsWith(attempt, StringComparison.Ordinal));
            Assert.True(line.StartsWith(attempt + "refused", StringComparison.Ordinal), r.Stdout);
        }

        Assert.Contains("child ok", lines);
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

        // The host can still start processes, and nothing of the bomb is left running (under this process's uids:
        // other test assemblies run their own sandboxes at the same time).
        Assert.Equal("ok", ExternalTools.Run("/bin/echo", "ok", TimeSpan.FromSeconds(5)).Trim());
        await Task.Delay(200);
        var (_, firstUid, uidCount) = BubblewrapSandbox.ProcessShare;
        int leftovers = Directory.GetDirectories("/proc").Count(d =>
        {
            try
            {
                return File.ReadAllText(Path.Combine(d, "status")).Split('\n')
                    .Any(l => l.StartsWith("Uid:", StringComparison.Ordinal) && int.Parse(l.Split('\t')[1]) >= firstUid &&
                              int.Parse(l.Split('\t')[1]) < firstUid + uidCount) &&
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
