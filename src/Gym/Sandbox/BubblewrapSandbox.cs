using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace K2RL.Gym.Sandbox;

/// <summary>
/// Runs programs in a <c>bubblewrap</c> sandbox:
/// <list type="bullet">
/// <item>no network (<c>--unshare-net</c>: only a down loopback), own pid/ipc/uts namespaces, a new session;</item>
/// <item>a private filesystem: <c>/usr</c> read-only (the interpreters live there), the program read-only under
/// <c>/code</c>, a size-limited tmpfs work directory <c>/work</c>, nothing else of the host;</item>
/// <item>an unprivileged uid of its own per run (when bwrap runs as root, via <c>setpriv</c>, from this process's
/// range of uids, <see cref="SandboxSlot"/>; a user namespace otherwise), so RLIMIT_NPROC binds and one run's fork
/// bomb cannot starve another, in this process or in another K2RL process on the host;</item>
/// <item>a seccomp filter (<see cref="SeccompFilter"/>): no new namespaces, no mounts, no memfd or SysV shared
/// memory, so no memory outside the limits below (a nested user namespace could mount a tmpfs of any size);</item>
/// <item>rlimits (<c>prlimit</c>): CPU seconds, address space, processes, file size, open files; and a wall-time
/// limit that kills the whole process tree (the pid namespace dies with its first process).</item>
/// </list>
/// Programs are written under this process's slot folder, which the next K2RL process to start empties if this
/// one is killed (<see cref="SandboxSlot"/>).
/// </summary>
public sealed class BubblewrapSandbox : ISandbox
{
    /// <summary>
    /// Runs the program as a script after the setup <c>site</c> would do that matters here (<c>exit</c>/<c>quit</c>);
    /// skipping <c>site</c> (<c>-S</c>) halves Python's start-up, the largest part of a sandboxed run.
    /// </summary>
    private const string PythonPrelude =
        "import sys, builtins; builtins.exit = builtins.quit = sys.exit; p = sys.argv[1]; sys.argv = sys.argv[1:]; " +
        "sys.path[0] = '/code'; exec(compile(open(p, encoding='utf-8').read(), p, 'exec'), " +
        "{'__name__': '__main__', '__file__': p, '__builtins__': builtins})";

    /// <summary>This process's slot and the seccomp filter file in it, taken by the first run of any instance.</summary>
    private static readonly Lazy<(SandboxSlot Slot, string Filter)> Shared = new(Setup);

    private readonly Dictionary<string, string[]> interpreters;
    private readonly SemaphoreSlim slots;

    /// <param name="maxConcurrent">Runs at once (at most <see cref="SandboxSlot.UidsPerSlot"/>); more wait. Default: twice the core count.</param>
    public BubblewrapSandbox(int maxConcurrent = 0, IReadOnlyDictionary<string, string[]>? interpreters = null)
    {
        this.interpreters = interpreters?.ToDictionary(kv => kv.Key, kv => kv.Value) ?? new Dictionary<string, string[]>
        {
            ["python3"] = ["/usr/bin/python3", "-I", "-S", "-c", PythonPrelude],
            ["sh"] = ["/bin/sh"],
            ["bash"] = ["/bin/bash"],
        };
        slots = new SemaphoreSlim(Math.Min(maxConcurrent > 0 ? maxConcurrent : 2 * Environment.ProcessorCount, SandboxSlot.UidsPerSlot));
        BwrapPath = Which("bwrap");
    }

    /// <summary>Where <c>bwrap</c> was found, or null (every run then fails with <see cref="SandboxStatus.SandboxError"/>).</summary>
    public string? BwrapPath { get; }

    public IReadOnlyCollection<string> Interpreters => interpreters.Keys;

    /// <summary>
    /// The folder this process writes programs under (one sub-folder per run) and, when it runs as root, its range of
    /// uids. Taking them (at the first run) empties what dead processes left in the sandbox root.
    /// </summary>
    public static (string ProgramDir, int FirstUid, int UidCount) ProcessShare
    {
        get
        {
            var slot = Shared.Value.Slot;
            return (slot.Dir, slot.UidStart, SandboxSlot.UidsPerSlot);
        }
    }

    public async ValueTask<SandboxResult> RunAsync(SandboxRequest request, CancellationToken ct = default)
    {
        if (BwrapPath is null)
        {
            return Error("bubblewrap (bwrap) is not installed: apt-get install -y bubblewrap");
        }

        if (!interpreters.TryGetValue(request.Interpreter, out var command))
        {
            return Error($"unknown interpreter '{request.Interpreter}' (have: {string.Join(", ", interpreters.Keys)})");
        }

        (SandboxSlot Slot, string Filter) shared;
        try
        {
            shared = Shared.Value;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            return Error("cannot set up the sandbox: " + e.Message);
        }

        await slots.WaitAsync(ct);
        string dir = Path.Combine(shared.Slot.Dir, Guid.NewGuid().ToString("N"));
        try
        {
            Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, "main"), request.Program);
            return await RunInAsync(dir, shared, command, request, ct);
        }
        finally
        {
            slots.Release();
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
    }

    private static (SandboxSlot, string) Setup()
    {
        var slot = SandboxSlot.Acquire();
        byte[] filter = SeccompFilter.ForThisMachine() ?? throw new PlatformNotSupportedException(
            $"no seccomp filter for {System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture} (x64 and arm64 only)");
        string path = Path.Combine(slot.Dir, "seccomp.bpf");
        File.WriteAllBytes(path, filter);
        return (slot, path);
    }

    private async Task<SandboxResult> RunInAsync(string dir, (SandboxSlot Slot, string Filter) shared, string[] command,
        SandboxRequest request, CancellationToken ct)
    {
        var limits = request.Limits;

        // bwrap reads the seccomp filter from a file descriptor; the shell opens the file as fd 3 and becomes bwrap.
        var psi = new ProcessStartInfo("/bin/sh")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in (string[])["-c", "exec \"$@\" 3< \"$0\"", shared.Filter, BwrapPath!, "--seccomp", "3"])
        {
            psi.ArgumentList.Add(a);
        }

        foreach (string a in BwrapArguments(dir, limits, shared.Slot))
        {
            psi.ArgumentList.Add(a);
        }

        // prlimit runs as the sandbox user, so it can only lower its own limits; then exec the interpreter.
        string cpu = limits.CpuSeconds.ToString(CultureInfo.InvariantCulture);
        string cpuHard = (limits.CpuSeconds + 1).ToString(CultureInfo.InvariantCulture);
        foreach (string a in (string[])
                 [
                     "/usr/bin/prlimit", $"--cpu={cpu}:{cpuHard}", $"--as={limits.MemoryBytes}",
                     $"--nproc={limits.MaxProcesses}", $"--fsize={limits.WorkDirBytes}", $"--nofile={limits.MaxOpenFiles}",
                     "--core=0", "--",
                 ])
        {
            psi.ArgumentList.Add(a);
        }

        foreach (string a in command)
        {
            psi.ArgumentList.Add(a);
        }

        psi.ArgumentList.Add("/code/main");
        var watch = Stopwatch.StartNew();
        Process process;
        try
        {
            process = await Spawner.StartAsync(psi);
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return Error("could not start bwrap: " + e.Message);
        }

        using (process)
        {
            using var wall = CancellationTokenSource.CreateLinkedTokenSource(ct);
            wall.CancelAfter(limits.WallTime);
            bool overflow = false;
            void OnOverflow()
            {
                overflow = true;
                Kill(process);
            }

            var stdout = ReadCappedAsync(process.StandardOutput.BaseStream, limits.MaxOutputBytes, OnOverflow);
            var stderr = ReadCappedAsync(process.StandardError.BaseStream, limits.MaxOutputBytes, OnOverflow);
            var stdinTask = WriteStdinAsync(process, request.Stdin);
            bool timedOut = false;
            try
            {
                await process.WaitForExitAsync(wall.Token);
            }
            catch (OperationCanceledException)
            {
                timedOut = !ct.IsCancellationRequested;
                Kill(process);
                await process.WaitForExitAsync(CancellationToken.None);
                ct.ThrowIfCancellationRequested();
            }

            await stdinTask;
            string outText = await stdout;
            string errText = await stderr;
            int code = process.ExitCode;
            var status = timedOut ? SandboxStatus.TimedOut
                : overflow ? SandboxStatus.OutputLimit
                : code == 0 ? SandboxStatus.Ok
                : code > 128 ? SandboxStatus.Signaled
                : SandboxStatus.NonZeroExit;
            if (code == 1 && errText.StartsWith("bwrap:", StringComparison.Ordinal))
            {
                status = SandboxStatus.SandboxError;
            }

            return new SandboxResult(status, code, outText, errText, watch.Elapsed);
        }
    }

    private static IEnumerable<string> BwrapArguments(string dir, SandboxLimits limits, SandboxSlot slot)
    {
        bool asRoot = SandboxSlot.AsRoot;
        yield return "--unshare-net";
        yield return "--unshare-pid";
        yield return "--unshare-ipc";
        yield return "--unshare-uts";
        yield return "--unshare-cgroup-try";
        if (!asRoot)
        {
            yield return "--unshare-user";
            yield return "--uid";
            yield return "65534";
            yield return "--gid";
            yield return "65534";
        }

        foreach (string a in (string[])
                 [
                     "--die-with-parent", "--new-session", "--hostname", "sandbox",
                     "--ro-bind", "/usr", "/usr",
                     "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                     "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
                     "--proc", "/proc", "--dev", "/dev",
                     "--ro-bind", dir, "/code",
                     "--perms", "1777", "--size", limits.WorkDirBytes.ToString(CultureInfo.InvariantCulture),
                     "--tmpfs", "/work",
                     "--chdir", "/work", "--clearenv",
                     "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/work", "--setenv", "LANG", "C.UTF-8",
                     "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
                     "--",
                 ])
        {
            yield return a;
        }

        if (asRoot)
        {
            string id = slot.NextUid().ToString(CultureInfo.InvariantCulture);
            foreach (string a in (string[])
                     [
                         "/usr/bin/setpriv", $"--reuid={id}", $"--regid={id}", "--clear-groups", "--no-new-privs",
                         "--inh-caps=-all", "--bounding-set=-all", "--",
                     ])
            {
                yield return a;
            }
        }
    }

    private static async Task WriteStdinAsync(Process process, string stdin)
    {
        try
        {
            if (stdin.Length > 0)
            {
                await process.StandardInput.WriteAsync(stdin);
            }

            process.StandardInput.Close();
        }
        catch (IOException)
        {
            // The program exited or closed stdin without reading it all.
        }
    }

    private static async Task<string> ReadCappedAsync(Stream stream, int cap, Action onOverflow)
    {
        var kept = new MemoryStream();
        var buffer = new byte[16 * 1024];
        bool over = false;
        while (true)
        {
            int n;
            try
            {
                n = await stream.ReadAsync(buffer);
            }
            catch (IOException)
            {
                break;
            }

            if (n == 0)
            {
                break;
            }

            if (over)
            {
                continue;
            }

            int room = cap - (int)kept.Length;
            kept.Write(buffer, 0, Math.Min(room, n));
            if (n > room)
            {
                over = true;
                onOverflow();
            }
        }

        return Encoding.UTF8.GetString(kept.GetBuffer(), 0, (int)kept.Length);
    }

    private static void Kill(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }
        catch (System.ComponentModel.Win32Exception)
        {
        }
    }

    /// <summary>
    /// Starts processes from one long-lived thread. bwrap's <c>--die-with-parent</c> uses PR_SET_PDEATHSIG, which fires
    /// when the *thread* that forked bwrap exits; pool threads come and go, so forking from them would kill healthy
    /// sandboxes at random. This thread lives as long as the process, so sandboxes die with the host and only then.
    /// </summary>
    private static class Spawner
    {
        private static readonly System.Collections.Concurrent.BlockingCollection<(ProcessStartInfo Psi, TaskCompletionSource<Process> Done)> Queue = new();

        static Spawner()
        {
            var thread = new Thread(() =>
            {
                foreach (var (psi, done) in Queue.GetConsumingEnumerable())
                {
                    try
                    {
                        done.SetResult(Process.Start(psi) ?? throw new InvalidOperationException("no process"));
                    }
                    catch (Exception e)
                    {
                        done.SetException(e);
                    }
                }
            })
            {
                IsBackground = true,
                Name = "k2rl-sandbox-spawner",
            };
            thread.Start();
        }

        public static Task<Process> StartAsync(ProcessStartInfo psi)
        {
            var done = new TaskCompletionSource<Process>(TaskCreationOptions.RunContinuationsAsynchronously);
            Queue.Add((psi, done));
            return done.Task;
        }
    }

    private static SandboxResult Error(string message) =>
        new(SandboxStatus.SandboxError, -1, "", message, TimeSpan.Zero);

    private static string? Which(string command)
    {
        foreach (string d in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':'))
        {
            if (d.Length > 0 && File.Exists(Path.Combine(d, command)))
            {
                return Path.Combine(d, command);
            }
        }

        return null;
    }
}
