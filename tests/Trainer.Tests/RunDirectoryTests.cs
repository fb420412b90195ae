using System.Diagnostics;
using K2RL.Trainer.Checkpointing;

namespace K2RL.Trainer.Tests;

/// <summary>Opening a run cleans up after a writer killed with kill -9, and only after a dead one.</summary>
public class RunDirectoryTests
{
    /// <summary>
    /// A real child process makes a temporary checkpoint folder and a LATEST temporary, named as the writer names
    /// them (with its own pid), and is killed with SIGKILL; opening the run deletes both. The temporaries of this
    /// process and of a child that is still running, a finished checkpoint and other dot-files stay.
    /// </summary>
    [Fact]
    public void OpeningARunDeletesWhatAKilledWriterLeftAndNothingOfALiveOne()
    {
        using var dir = new TestUtil.TempDir();
        var run = new RunDirectory(dir.Path);
        run.Create();
        string guid = Guid.NewGuid().ToString("N");
        string script = $"""
            mkdir "checkpoints/.step-8.tmp-$$-{guid}" && head -c 100000 /dev/zero > "checkpoints/.step-8.tmp-$$-{guid}/model.safetensors" &&
            echo checkpoints/step-8 > ".LATEST.tmp-$$-{guid}" && echo ready && exec sleep 600
            """;
        using var killed = StartShell(dir.Path, script);
        using var alive = StartShell(dir.Path, $"""mkdir "checkpoints/.step-9.tmp-$$-{guid}" && echo ready && exec sleep 600""");
        try
        {
            Assert.Equal("ready", killed.StandardOutput.ReadLine());
            Assert.Equal("ready", alive.StandardOutput.ReadLine());
            killed.Kill(); // SIGKILL
            killed.WaitForExit();

            string own = $".step-10.tmp-{Environment.ProcessId}-{guid}";
            Directory.CreateDirectory(Path.Combine(run.Checkpoints, own));
            Directory.CreateDirectory(Path.Combine(run.Checkpoints, "step-4"));
            File.WriteAllText(Path.Combine(dir.Path, ".notes"), "mine");

            Assert.Null(run.Open(resume: false, _ => Assert.Fail("nothing to load")));

            Assert.Equal(
                [$".step-10.tmp-{Environment.ProcessId}-{guid}", $".step-9.tmp-{alive.Id}-{guid}", "step-4"],
                Directory.GetDirectories(run.Checkpoints).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            Assert.Equal([".notes"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
        }
        finally
        {
            alive.Kill();
            alive.WaitForExit();
        }
    }

    private static Process StartShell(string workingDirectory, string script)
    {
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, UseShellExecute = false, WorkingDirectory = workingDirectory };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        return Process.Start(psi)!;
    }
}
