using System.Diagnostics;

namespace K2RL.Cli.Tests;

/// <summary>
/// A real full disk: the RL job runs as a child process on a tmpfs (a private mount namespace made by
/// <c>unshare -rm</c>) sized to hold its first checkpoint but not the second. Writing the second fails with ENOSPC; the
/// job must stop with an error that says so, leave LATEST on the first checkpoint intact, and a resume from a copy of
/// that run directory on a disk with room must reproduce the uninterrupted run.
/// </summary>
public sealed class RlFullDiskIntegrationTests
{
    [Fact]
    public async Task AFullDiskWhileCheckpointingKeepsThePreviousCheckpoint()
    {
        using var jobs = new RlTestJobs(iterations: 6, every: 2);
        string reference = jobs.RunDir("reference");
        using (var p = ChildK2rl.Start("rl", "--job", jobs.JobPath, "--run-dir", reference))
        {
            ChildK2rl.Finish(p);
        }

        // Room for everything the run writes besides checkpoints, one checkpoint and half of another.
        long checkpoint = DirectoryBytes(Path.Combine(reference, "checkpoints", "step-6"));
        long rest = DirectoryBytes(reference) - DirectoryBytes(Path.Combine(reference, "checkpoints"));
        long tmpfsBytes = rest + checkpoint * 3 / 2 + 256 * 1024;

        string mount = Directory.CreateDirectory(jobs.RunDir("mnt")).FullName;
        string copied = Directory.CreateDirectory(jobs.RunDir("copied")).FullName;
        var psi = new ProcessStartInfo("unshare")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[]
        {
            "-rm", "sh", "-c",
            "mount -t tmpfs -o size=\"$3\" k2rl-full \"$1\" || exit 90; " +
            "\"$4\" \"$5\" rl --job \"$6\" --run-dir \"$1/run\"; rc=$?; cp -a \"$1/run\" \"$2/\"; exit $rc",
            "sh", mount, copied, tmpfsBytes.ToString(), Environment.ProcessPath!, Path.Combine(AppContext.BaseDirectory, "k2rl.dll"), jobs.JobPath,
        })
        {
            psi.ArgumentList.Add(a);
        }

        using var child = Process.Start(psi)!;
        var stderr = child.StandardError.ReadToEndAsync();
        await child.StandardOutput.ReadToEndAsync();
        Assert.True(child.WaitForExit(TimeSpan.FromMinutes(5)), "the child did not finish");
        string err = await stderr;
        Assert.True(child.ExitCode != 90, $"could not mount a tmpfs in a private mount namespace (unshare -rm): {err}");
        Assert.True(child.ExitCode != 0, $"the job finished although its disk was full ({tmpfsBytes} bytes):\n{err}");
        Assert.Contains("error: writing checkpoint step-4", err);
        Assert.Contains("No space left on device", err);
        Assert.Contains("LATEST still names the previous checkpoint: checkpoints/step-2", err);
        Assert.DoesNotContain("   at ", err);   // one line, no stack trace

        string run = Path.Combine(copied, "run");
        Assert.Equal("checkpoints/step-2", File.ReadAllText(Path.Combine(run, "LATEST")).Trim());
        using (var p = ChildK2rl.Start("rl", "--job", jobs.JobPath, "--run-dir", run, "--resume"))
        {
            ChildK2rl.Finish(p);
        }

        Assert.Equal(RlTestJobs.Deterministic(reference), RlTestJobs.Deterministic(run));
    }

    private static long DirectoryBytes(string dir) =>
        new DirectoryInfo(dir).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
}
