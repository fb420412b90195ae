using System.Diagnostics;

namespace K2RL.Cli.Tests;

/// <summary>
/// The built k2rl as a child process: SIGTERM writes a checkpoint and exits; kill -9 between checkpoints loses
/// only the steps since the last one. Either way, --resume reproduces the uninterrupted run's losses exactly.
/// </summary>
public class PretrainIntegrationTests
{
    private const int Compared = 24;

    private static Process Start(string job, string runDir, params string[] extra) =>
        ChildK2rl.Start(["pretrain", "--job", job, "--run-dir", runDir, .. extra]);

    private static void Finish(Process p) => ChildK2rl.Finish(p);

    private static void WaitForSteps(Process p, string runDir, int steps) => ChildK2rl.WaitForMetrics(p, runDir, steps);

    private static float[] Reference(PretrainTestJobs jobs)
    {
        using var p = Start(jobs.JobPath, jobs.RunDir("reference"), "--max-steps", Compared.ToString());
        Finish(p);
        return PretrainTestJobs.Losses(jobs.RunDir("reference"));
    }

    [Fact]
    public void Sigterm_WritesACheckpointAndExits_AndResumeMatchesTheUninterruptedRun()
    {
        using var jobs = new PretrainTestJobs(steps: 1000, every: 1000);
        var reference = Reference(jobs);
        string run = jobs.RunDir("sigterm");
        using (var p = Start(jobs.JobPath, run))
        {
            WaitForSteps(p, run, 4);
            Process.Start("kill", ["-TERM", p.Id.ToString()])!.WaitForExit();
            Assert.True(p.WaitForExit(TimeSpan.FromMinutes(2)));
            Assert.Equal(130, p.ExitCode);
        }

        int done = PretrainTestJobs.Losses(run).Length;
        Assert.Equal($"checkpoints/step-{done}", File.ReadAllText(Path.Combine(run, "LATEST")).Trim());
        Assert.True(done < Compared, $"stopped at {done}");
        using (var p = Start(jobs.JobPath, run, "--resume", "--max-steps", Compared.ToString()))
        {
            Finish(p);
        }

        Assert.Equal(reference, PretrainTestJobs.Losses(run));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)] // gradient accumulation: the cursor must advance 3 micro-batches per step, also across the kill
    public void Kill9_BetweenCheckpoints_ResumeFromTheLastOneMatchesTheUninterruptedRun(int gradAccum)
    {
        using var jobs = new PretrainTestJobs(steps: 1000, every: 4, gradAccum: gradAccum);
        var reference = Reference(jobs);
        string run = jobs.RunDir("killed");
        using (var p = Start(jobs.JobPath, run))
        {
            WaitForSteps(p, run, 10);
            p.Kill(); // SIGKILL: no handler runs
            p.WaitForExit();
        }

        string latest = File.ReadAllText(Path.Combine(run, "LATEST")).Trim();
        int written = PretrainTestJobs.Losses(run).Length;
        Assert.True(written >= 10);
        Assert.True(written < Compared, $"the child ran to {written} before the kill");
        Assert.Matches(@"^checkpoints/step-(4|8|12|16|20)$", latest);
        using (var p = Start(jobs.JobPath, run, "--resume", "--max-steps", Compared.ToString()))
        {
            Finish(p);
        }

        Assert.Equal(reference, PretrainTestJobs.Losses(run));
    }
}
