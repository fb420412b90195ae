using System.Diagnostics;
using K2RL.Common;

namespace K2RL.Gym;

/// <summary>
/// The caller's bounds on every episode, whatever the environment (in-process, plugin or remote): they hold even when
/// the environment never ends an episode, hangs, or answers garbage. <see cref="EnvironmentLimits"/> are the
/// environment's own rules; these are the runner's.
/// </summary>
public sealed record EpisodeLimits
{
    public const int DefaultMaxTurns = 32;

    /// <summary>Actions per episode; an episode the environment has not ended by then is truncated.</summary>
    public int MaxTurns { get; init; } = DefaultMaxTurns;

    /// <summary>The limit on one environment call (reset, step, snapshot, restore, close); past it the episode fails.</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The environment's time in one episode, all its calls together (not the policy's generation, which depends on
    /// the model and the batch); past it the episode fails.
    /// </summary>
    public TimeSpan EpisodeTimeout { get; init; } = TimeSpan.FromSeconds(600);

    /// <summary>Null when the limits are usable, else what is wrong, for a config error.</summary>
    public string? Problem() =>
        MaxTurns < 1 ? $"max turns must be >= 1 (got {MaxTurns})"
        : CallTimeout <= TimeSpan.Zero ? $"the call timeout must be > 0 (got {CallTimeout.TotalSeconds} s)"
        : EpisodeTimeout <= TimeSpan.Zero ? $"the episode timeout must be > 0 (got {EpisodeTimeout.TotalSeconds} s)"
        : null;
}

/// <summary>An environment call that threw, timed out or ran out of episode time; the message says which, naming the environment.</summary>
public sealed class EnvironmentFailedException(string message, Exception? inner = null) : K2Exception(message, inner!);

/// <summary>
/// The one place every episode of evaluation (<see cref="Eval.Evaluator"/>) and of RL (the rollout's episode runner)
/// passes through, around any <see cref="IEnvironment"/>:
/// <list type="bullet">
/// <item>every call runs on the thread pool under <see cref="EpisodeLimits.CallTimeout"/> and what is left of
/// <see cref="EpisodeLimits.EpisodeTimeout"/>, so an environment that blocks or hangs cannot hold the caller;</item>
/// <item>a step that throws, times out or returns a non-finite reward becomes <see cref="StepResult.Failure"/> (the
/// episode ends as failed, with the reason), and so does every later step of that episode;</item>
/// <item>after <see cref="EpisodeLimits.MaxTurns"/> steps an episode the environment has not ended is truncated.</item>
/// </list>
/// Reset, Snapshot and Restore throw <see cref="EnvironmentFailedException"/> instead (there is no step to fail);
/// Close never throws. Only the caller's own cancellation throws from Step.
/// </summary>
/// <param name="name">the name the caller knows the environment by (a registry name), for messages; default: the environment's own.</param>
public sealed class GuardedEnvironment(IEnvironment inner, EpisodeLimits limits, string? name = null) : IEnvironment
{
    private TimeSpan used;
    private string? failure;
    private bool closed;

    public string Name { get; } = name ?? inner.Name;

    public IEnvironment Inner => inner;

    public EpisodeLimits Limits => limits;

    /// <summary>Steps taken in this episode.</summary>
    public int Turns { get; private set; }

    /// <summary>Why the episode failed, or null.</summary>
    public string? Failure => failure;

    public async ValueTask<Observation> ResetAsync(long seed, ResetOptions? options = null, CancellationToken ct = default)
    {
        Begin(0);
        return await CallAsync("reset", t => inner.ResetAsync(seed, options, t), ct);
    }

    public async ValueTask<StepResult> StepAsync(string action, CancellationToken ct = default)
    {
        if (failure is not null)
        {
            return StepResult.Failure(failure);
        }

        Turns++;
        StepResult step;
        try
        {
            step = await CallAsync($"step {Turns}", t => inner.StepAsync(action, t), ct);
        }
        catch (EnvironmentFailedException e)
        {
            step = StepResult.Failure(e.Message);
        }

        if (!step.Failed && !double.IsFinite(step.Reward))
        {
            step = StepResult.Failure($"environment '{Name}' step {Turns} returned a non-finite reward ({step.Reward})");
        }

        if (step.Failed)
        {
            failure = step.Info.Failure;
            return step;
        }

        return !step.Done && Turns >= limits.MaxTurns ? step with { Truncated = true } : step;
    }

    public ValueTask<byte[]> SnapshotAsync(CancellationToken ct = default) => new(CallAsync("snapshot", inner.SnapshotAsync, ct));

    public ValueTask RestoreAsync(ReadOnlyMemory<byte> state, CancellationToken ct = default) => RestoreAsync(state, 0, ct);

    /// <summary>Restores an episode that had taken <paramref name="turns"/> steps: the turn cap counts them. Its environment time starts again.</summary>
    public async ValueTask RestoreAsync(ReadOnlyMemory<byte> state, int turns, CancellationToken ct = default)
    {
        Begin(turns);
        await CallAsync("restore", async t =>
        {
            await inner.RestoreAsync(state, t);
            return true;
        }, ct);
    }

    /// <summary>Closes the environment within the call timeout; a close that throws or hangs only leaks that environment.</summary>
    public async ValueTask CloseAsync()
    {
        if (closed)
        {
            return;
        }

        closed = true;
        try
        {
            await Task.Run(() => inner.CloseAsync().AsTask()).WaitAsync(limits.CallTimeout);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // the episode's outcome is already decided
        }
    }

    public ValueTask DisposeAsync() => CloseAsync();

    private void Begin(int turns)
    {
        Turns = turns;
        used = TimeSpan.Zero;
        failure = null;
    }

    /// <summary>
    /// Runs one call on the thread pool within the call timeout and the episode's remaining time; its duration counts
    /// against the episode. A throw or timeout is an <see cref="EnvironmentFailedException"/>; the caller's cancellation throws as is.
    /// </summary>
    private async Task<T> CallAsync<T>(string what, Func<CancellationToken, ValueTask<T>> call, CancellationToken ct)
    {
        var left = limits.EpisodeTimeout - used;
        bool episodeBound = left <= limits.CallTimeout;
        if (left <= TimeSpan.Zero)
        {
            throw new EnvironmentFailedException(OutOfTime(what));
        }

        var timeout = episodeBound ? left : limits.CallTimeout;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        long start = Stopwatch.GetTimestamp();
        try
        {
            return await Task.Run(() => call(cts.Token).AsTask(), cts.Token).WaitAsync(timeout, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception) when (ct.IsCancellationRequested)
        {
            throw new OperationCanceledException(ct);   // e.g. a remote's RpcException(Cancelled): the caller's own cancellation
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException || cts.IsCancellationRequested)
        {
            // whatever the call threw once the timeout cancelled it (a remote says Cancelled) is the timeout
            throw new EnvironmentFailedException(episodeBound ? OutOfTime(what) : $"environment '{Name}' {what} timed out after {Seconds(timeout)} s", ex);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw new EnvironmentFailedException($"environment '{Name}' {what} threw {ex.GetType().Name}: {ex.Message}", ex);
        }
        finally
        {
            used += Stopwatch.GetElapsedTime(start);
        }
    }

    private string OutOfTime(string what) =>
        $"environment '{Name}' {what}: the episode's {Seconds(limits.EpisodeTimeout)} s of environment time ran out";

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture);
}
