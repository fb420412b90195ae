namespace K2RL.Trainer.Rl;

/// <summary>What an RL job is doing, as job control reports it.</summary>
public enum JobRunState
{
    Running,
    Paused,
    Draining,
    Stopping,
}

/// <summary>A consistent view of a <see cref="JobControlState"/>.</summary>
/// <param name="Parked">True while the loop waits between iterations (paused, or drained).</param>
/// <param name="LastMetrics">The last metrics.jsonl line, or null before the first iteration.</param>
/// <param name="LastCheckpoint">The newest checkpoint folder the job wrote or resumed from, or null.</param>
public sealed record JobControlSnapshot(long Iteration, long TotalIterations, long Version, JobRunState State, bool Parked,
    string? LastMetrics, string? LastCheckpoint);

/// <summary>
/// The RL loop's controller: job control (any thread) asks for pause, drain, resume and stop; the loop
/// (<see cref="RlJob.TrainAsync"/>) consults it between iterations and reports its progress. Pause and drain take
/// effect once the iteration in flight has finished; stop fires <see cref="StopToken"/>, which the loop treats as it
/// treats SIGINT/SIGTERM (checkpoint, then return).
/// </summary>
public sealed class JobControlState : IDisposable
{
    private readonly object gate = new();
    private readonly CancellationTokenSource stop = new();
    private TaskCompletionSource wake = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private JobRunState state = JobRunState.Running;
    private bool drainPending;
    private bool parked;
    private long iteration;
    private long total;
    private long version;
    private string? lastMetrics;
    private string? lastCheckpoint;

    /// <summary>Fires once <see cref="Stop"/> is called.</summary>
    public CancellationToken StopToken => stop.Token;

    public bool StopRequested => stop.IsCancellationRequested;

    public JobControlSnapshot Snapshot()
    {
        lock (gate)
        {
            return new JobControlSnapshot(iteration, total, version, state, parked, lastMetrics, lastCheckpoint);
        }
    }

    /// <summary>No new iteration starts until <see cref="Resume"/>; a draining or stopping job is left as it is.</summary>
    public JobControlSnapshot Pause()
    {
        lock (gate)
        {
            if (state == JobRunState.Running)
            {
                state = JobRunState.Paused;
            }
        }

        return Snapshot();
    }

    /// <summary>After the iteration in flight (or at once when parked): a checkpoint, then paused.</summary>
    public JobControlSnapshot Drain()
    {
        lock (gate)
        {
            if (state != JobRunState.Stopping)
            {
                state = JobRunState.Draining;
                drainPending = true;
                WakeLocked();
            }
        }

        return Snapshot();
    }

    /// <summary>Goes on after a pause or drain (a pending drain's checkpoint is still written first).</summary>
    public JobControlSnapshot Resume()
    {
        lock (gate)
        {
            if (state != JobRunState.Stopping)
            {
                state = JobRunState.Running;
                WakeLocked();
            }
        }

        return Snapshot();
    }

    /// <summary>Asks the loop to checkpoint and return, as SIGINT/SIGTERM do.</summary>
    public JobControlSnapshot Stop()
    {
        lock (gate)
        {
            state = JobRunState.Stopping;
        }

        stop.Cancel();
        return Snapshot();
    }

    /// <summary>The loop's progress: called once it has loaded (or resumed) and after every iteration.</summary>
    public void Report(long iterationsDone, long totalIterations, long weightVersion, string? metricsLine, string? checkpoint)
    {
        lock (gate)
        {
            iteration = iterationsDone;
            total = totalIterations;
            version = weightVersion;
            lastMetrics = metricsLine ?? lastMetrics;
            lastCheckpoint = checkpoint ?? lastCheckpoint;
        }
    }

    /// <summary>
    /// The loop's boundary between iterations: writes a pending drain's checkpoint (with <paramref name="saveCheckpoint"/>),
    /// then waits while paused. Returns when the loop may go on; throws <see cref="OperationCanceledException"/> when
    /// <paramref name="stopToken"/> fires while it waits.
    /// </summary>
    public async Task BetweenIterationsAsync(Func<string> saveCheckpoint, CancellationToken stopToken)
    {
        try
        {
            while (true)
            {
                Task resumed;
                bool drain;
                lock (gate)
                {
                    drain = drainPending && state != JobRunState.Stopping;
                    drainPending = false;
                }

                if (drain)
                {
                    string dir = saveCheckpoint();
                    lock (gate)
                    {
                        lastCheckpoint = dir;
                        if (state == JobRunState.Draining)
                        {
                            state = JobRunState.Paused;
                        }
                    }

                    continue;
                }

                lock (gate)
                {
                    if (state != JobRunState.Paused)
                    {
                        return;
                    }

                    parked = true;
                    resumed = wake.Task;
                }

                await resumed.WaitAsync(stopToken).ConfigureAwait(false);
            }
        }
        finally
        {
            lock (gate)
            {
                parked = false;
            }
        }
    }

    public void Dispose() => stop.Dispose();

    private void WakeLocked()
    {
        var old = wake;
        wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        old.TrySetResult();
    }
}
