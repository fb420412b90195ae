using K2RL.Trainer.Rl;

namespace K2RL.Trainer.Tests.Rl;

/// <summary>The RL loop's controller: what the loop's boundary does for each request, and in which state it leaves the job.</summary>
public sealed class JobControlStateTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task RunningPassesTheBoundaryAtOnce()
    {
        using var c = new JobControlState();
        int saved = 0;
        await c.BetweenIterationsAsync(() => $"ckpt-{++saved}", CancellationToken.None).WaitAsync(Patience);
        Assert.Equal(0, saved);
        Assert.Equal(JobRunState.Running, c.Snapshot().State);
    }

    [Fact]
    public async Task PauseParksTheLoopUntilResume()
    {
        using var c = new JobControlState();
        Assert.Equal(JobRunState.Paused, c.Pause().State);
        var boundary = c.BetweenIterationsAsync(() => throw new InvalidOperationException("no checkpoint on pause"), CancellationToken.None);
        await WaitUntil(() => c.Snapshot().Parked);
        await Task.Delay(50);
        Assert.False(boundary.IsCompleted);
        Assert.Equal(JobRunState.Running, c.Resume().State);
        await boundary.WaitAsync(Patience);
        Assert.False(c.Snapshot().Parked);
    }

    [Fact]
    public async Task DrainCheckpointsOnceThenStaysPausedUntilResume()
    {
        using var c = new JobControlState();
        int saved = 0;
        Assert.Equal(JobRunState.Draining, c.Drain().State);
        var boundary = c.BetweenIterationsAsync(() => $"step-{++saved}", CancellationToken.None);
        await WaitUntil(() => c.Snapshot().Parked);
        Assert.Equal(1, saved);
        var s = c.Snapshot();
        Assert.Equal((JobRunState.Paused, "step-1"), (s.State, s.LastCheckpoint));
        c.Resume();
        await boundary.WaitAsync(Patience);
        Assert.Equal(1, saved);
    }

    [Fact]
    public async Task DrainWhileParkedCheckpointsAtOnceAndResumeDuringADrainStillCheckpoints()
    {
        using var c = new JobControlState();
        int saved = 0;
        c.Pause();
        var boundary = c.BetweenIterationsAsync(() => $"step-{++saved}", CancellationToken.None);
        await WaitUntil(() => c.Snapshot().Parked);
        c.Drain();   // wakes the parked loop: it writes the checkpoint and parks again
        await WaitUntil(() => saved == 1 && c.Snapshot().Parked);
        Assert.Equal(JobRunState.Paused, c.Snapshot().State);
        c.Resume();
        await boundary.WaitAsync(Patience);

        c.Drain();
        c.Resume();   // before the loop reached its boundary: the drain's checkpoint is written, then it goes on
        await c.BetweenIterationsAsync(() => $"step-{++saved}", CancellationToken.None).WaitAsync(Patience);
        Assert.Equal((2, JobRunState.Running), (saved, c.Snapshot().State));
    }

    [Fact]
    public async Task StopFiresTheTokenWakesAParkedLoopAndCannotBeUndone()
    {
        using var c = new JobControlState();
        c.Pause();
        var boundary = c.BetweenIterationsAsync(() => "x", c.StopToken);
        await WaitUntil(() => c.Snapshot().Parked);
        Assert.Equal(JobRunState.Stopping, c.Stop().State);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => boundary.WaitAsync(Patience));
        Assert.True(c.StopRequested);
        Assert.Equal(JobRunState.Stopping, c.Resume().State);
        Assert.Equal(JobRunState.Stopping, c.Pause().State);
        Assert.Equal(JobRunState.Stopping, c.Drain().State);
        Assert.False(c.Snapshot().Parked);
    }

    [Fact]
    public void ReportKeepsTheLastMetricsAndCheckpointWhenGivenNone()
    {
        using var c = new JobControlState();
        c.Report(3, 10, 3, "{\"iteration\":3}", "checkpoints/step-2");
        c.Report(4, 10, 4, null, null);
        Assert.Equal(new JobControlSnapshot(4, 10, 4, JobRunState.Running, false, "{\"iteration\":3}", "checkpoints/step-2"), c.Snapshot());
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition never held");
            await Task.Delay(5);
        }
    }
}
