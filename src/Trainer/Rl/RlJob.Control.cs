namespace K2RL.Trainer.Rl;

public sealed partial class RlJob
{
    /// <summary>What job control's status and the metrics report about rollout workers; the embedded job has none.</summary>
    public IWorkerPoolStatus WorkerPool { get; private set; } = EmbeddedWorkerPool.Instance;

    /// <summary>The job file's iteration count.</summary>
    public long TotalIterations => job.Iterations;

    /// <summary>The loop's boundary between iterations: job control's drain and pause; true when the loop must stop.</summary>
    private async Task<bool> AtBoundaryAsync(JobControlState? control, CancellationToken stop)
    {
        if (control is not null && !stop.IsCancellationRequested)
        {
            try
            {
                await control.BetweenIterationsAsync(SaveCheckpoint, stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
        }

        return stop.IsCancellationRequested;
    }
}
