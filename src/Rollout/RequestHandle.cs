namespace K2RL.Rollout;

/// <summary>A submitted request: its result when it ends, and a way to cancel it (its cache blocks are freed at the next step).</summary>
public sealed class RequestHandle
{
    private readonly TaskCompletionSource<GenerationResult> done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool cancelRequested;

    internal RequestHandle(string id)
    {
        Id = id;
    }

    public string Id { get; }

    public Task<GenerationResult> Completion => done.Task;

    /// <summary>The result once the request has ended (it ends inside a step), else null; never blocks.</summary>
    public GenerationResult? Result => done.Task.IsCompletedSuccessfully ? done.Task.Result : null;

    public bool IsCancellationRequested => cancelRequested;

    public void Cancel() => cancelRequested = true;

    internal void Complete(GenerationResult result) => done.TrySetResult(result);
}
