namespace K2RL.Cli.Tests;

/// <summary>
/// The built k2rl rl as a child process: kill -9 at a random moment (mid-generation, mid-training or mid-checkpoint)
/// leaves the last checkpoint loadable, and --resume reproduces the uninterrupted run's metrics; SIGTERM checkpoints and exits 130.
/// </summary>
public sealed class RlIntegrationTests
{
    [Fact]
    public void Kill9AtARandomMomentThenResumeMatchesTheUninterruptedRun()
    {
        using var jobs = new RlTestJobs(iterations: 6, every: 2, tokenBudget: 20);
        string reference = jobs.RunDir("reference"), killed = jobs.RunDir("killed");
        using (var p = ChildK2rl.Start("rl", "--job", jobs.JobPath, "--run-dir", reference))
        {
            ChildK2rl.Finish(p);
        }

        int delayMs = new Random().Next(0, 400);
        using (var p = ChildK2rl.Start("rl", "--job", jobs.JobPath, "--run-dir", killed))
        {
            ChildK2rl.WaitForMetrics(p, killed, 2);
            Thread.Sleep(delayMs);
            p.Kill();   // SIGKILL: no handler runs
            p.WaitForExit();
        }

        using (var p = ChildK2rl.Start("rl", "--job", jobs.JobPath, "--run-dir", killed, "--resume"))
        {
            ChildK2rl.Finish(p);
        }

        Assert.Equal(RlTestJobs.Deterministic(reference), RlTestJobs.Deterministic(killed));
    }

    [Fact]
    public void SigtermWritesACheckpointAndExits130()
    {
        using var jobs = new RlTestJobs(iterations: 1000, every: 1000);
        string run = jobs.RunDir("term");
        using var p = ChildK2rl.Start("rl", "--job", jobs.JobPath, "--run-dir", run);
        ChildK2rl.WaitForMetrics(p, run, 1);
        System.Diagnostics.Process.Start("kill", ["-TERM", p.Id.ToString()])!.WaitForExit();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(2)));
        Assert.Equal(130, p.ExitCode);
        int done = File.ReadAllLines(System.IO.Path.Combine(run, "metrics.jsonl")).Length;
        Assert.Equal($"checkpoints/step-{done}", File.ReadAllText(System.IO.Path.Combine(run, "LATEST")).Trim());
    }
}
