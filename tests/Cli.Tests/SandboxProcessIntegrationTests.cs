using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using K2RL.Gym;
using K2RL.Gym.Remote;

namespace K2RL.Cli.Tests;

/// <summary>
/// The code sandbox across processes: <c>k2rl gym serve</c> children, each with its own sandbox, driven over the
/// remote-environment protocol. Waits poll real state (/proc, the slot folders) with generous deadlines.
/// </summary>
public sealed class SandboxProcessIntegrationTests
{
    private const string Fence = "```python\n";

    /// <summary>Forks up to the process limit and keeps every child asleep: the process limit stays used up.</summary>
    private const string ForkHolder =
        Fence + "import os, time\nwhile True:\n    try:\n        if os.fork() == 0:\n            time.sleep(60)\n" +
        "    except OSError:\n        time.sleep(0.05)\n```";

    [Fact]
    public async Task AForkBombInOneProcessDoesNotStopACorrectProgramInAnother()
    {
        using var a = ChildK2rl.Start("gym", "serve", "--json");
        using var b = ChildK2rl.Start("gym", "serve", "--json");
        try
        {
            await using var bombEnv = new RemoteEnvironment(await AddressOf(a), "code");
            await using var env = new RemoteEnvironment(await AddressOf(b), "code");
            await env.ResetAsync(7);

            // Wait until one of a's sandboxes holds its whole process limit (16 processes under one uid). The bomb has
            // the sandbox's 5 s of wall time to get there; on a loaded machine (CI once) it can run out first, so a
            // bomb that ended without holding the limit is started again, up to three times.
            bool Holds() => Descendants(a.Id).Where(p => p.Uid != 0).GroupBy(p => p.Uid).Any(g => g.Count() >= 16);
            Task<StepResult>? bomb = null;
            bool held = false;
            for (int attempt = 0; attempt < 3 && !held; attempt++)
            {
                await bombEnv.ResetAsync(1 + attempt);
                var started = bombEnv.StepAsync(ForkHolder).AsTask();
                bomb = started;
                await Until(() => (held = Holds()) || started.IsCompleted);
            }

            Assert.True(held, "the fork bomb in the first process never reached its process limit (3 tries)");

            // A correct program that also starts a thread and a child process: each needs one more process under
            // its uid, which a shared uid would not have.
            await using var local = (TaskEnvironment)GymRegistry.CreateDefault().CreateEnvironment("code");
            await local.ResetAsync(7);
            string program = local.Task!.Solution.Replace(Fence,
                Fence + "import subprocess, threading\nt = threading.Thread(target=lambda: None)\nt.start()\nt.join()\n" +
                "subprocess.run(['/bin/true'], check=True)\n", StringComparison.Ordinal);
            var step = await env.StepAsync(program);
            Assert.True(step.Info.Correct == true, step.Info.Data.GetValueOrDefault("reason"));

            var bombStep = await bomb!;
            Assert.Equal(false, bombStep.Info.Correct);
        }
        finally
        {
            Stop(a);
            Stop(b);
        }
    }

    [Fact]
    public async Task AProcessKilledMidRunLeavesNoSandboxesAndItsProgramFoldersAreRemovedAtTheNextStart()
    {
        using var victim = ChildK2rl.Start("gym", "serve", "--json");
        string slotFolder;
        List<int> sandboxed;
        try
        {
            await using var env = new RemoteEnvironment(await AddressOf(victim), "code");
            await env.ResetAsync(1);
            var step = env.StepAsync(Fence + "import time\ntime.sleep(60)\n```").AsTask();
            Assert.True(await Until(() => SlotFolderOf(victim.Id) is { } f && Directory.GetDirectories(f).Length > 0 &&
                                          Descendants(victim.Id).Any(p => p.Command.Contains("python3", StringComparison.Ordinal))),
                "the child never started a sandboxed program");
            slotFolder = SlotFolderOf(victim.Id)!;
            sandboxed = Descendants(victim.Id).Select(p => p.Pid).ToList();

            victim.Kill(entireProcessTree: false); // SIGKILL, the k2rl process alone
            await victim.WaitForExitAsync();
            await Task.WhenAny(step); // the episode fails, one way or another: its server is gone
        }
        finally
        {
            Stop(victim);
        }

        // Its sandboxes die with it (bwrap --die-with-parent, pid namespaces); its program folders stay for now.
        Assert.True(await Until(() => sandboxed.All(pid => !Directory.Exists($"/proc/{pid}"))),
            "sandboxed processes outlived the killed process");
        Assert.NotEmpty(Directory.GetDirectories(slotFolder));

        // The next K2RL process to run a program removes them.
        using var next = ChildK2rl.Start("gym", "serve", "--json");
        try
        {
            await using var env = new RemoteEnvironment(await AddressOf(next), "code");
            await env.ResetAsync(2);
            await env.StepAsync(Fence + "print(1)\n```");
            Assert.Empty(Directory.GetDirectories(slotFolder));
        }
        finally
        {
            Stop(next);
        }
    }

    private static async Task<Uri> AddressOf(Process child)
    {
        var line = child.StandardOutput.ReadLineAsync();
        Assert.True(await Task.WhenAny(line, Task.Delay(TimeSpan.FromMinutes(2))) == line, "k2rl gym serve printed no address");
        using var doc = JsonDocument.Parse(await line ?? "{}");
        return new Uri(doc.RootElement.GetProperty("address").GetString()!);
    }

    private static void Stop(Process child)
    {
        if (!child.HasExited)
        {
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
        }
    }

    /// <summary>Polls <paramref name="condition"/> for up to two minutes; a deadline for a hang, not a speed test.</summary>
    private static async Task<bool> Until(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (DateTime.UtcNow < deadline)
        {
            if (condition())
            {
                return true;
            }

            await Task.Delay(20);
        }

        return condition();
    }

    /// <summary>The slot folder a process holds: its open <c>N.lock</c> file's sibling <c>N/</c>.</summary>
    private static string? SlotFolderOf(int pid)
    {
        try
        {
            foreach (string fd in Directory.GetFiles($"/proc/{pid}/fd"))
            {
                if (new FileInfo(fd).LinkTarget is { } target && target.EndsWith(".lock", StringComparison.Ordinal) &&
                    Path.GetFileName(Path.GetDirectoryName(target)!).StartsWith("k2rl-sandbox", StringComparison.Ordinal))
                {
                    return target[..^".lock".Length];
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }

        return null;
    }

    private sealed record ProcInfo(int Pid, int Parent, int Uid, string Command);

    /// <summary>Every process below <paramref name="root"/> in the process tree, from /proc.</summary>
    private static List<ProcInfo> Descendants(int root)
    {
        var all = new List<ProcInfo>();
        foreach (string dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
            {
                continue;
            }

            try
            {
                var status = File.ReadAllLines(Path.Combine(dir, "status"));
                int Field(string name) => int.Parse(status.First(l => l.StartsWith(name, StringComparison.Ordinal)).Split('\t')[1],
                    CultureInfo.InvariantCulture);
                all.Add(new ProcInfo(pid, Field("PPid:"), Field("Uid:"), File.ReadAllText(Path.Combine(dir, "cmdline"))));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException)
            {
                // The process exited while being read.
            }
        }

        var below = new HashSet<int> { root };
        var found = new List<ProcInfo>();
        for (bool grew = true; grew;)
        {
            grew = false;
            foreach (var p in all.Where(p => !below.Contains(p.Pid) && below.Contains(p.Parent)))
            {
                below.Add(p.Pid);
                found.Add(p);
                grew = true;
            }
        }

        return found;
    }
}
