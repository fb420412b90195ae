using K2RL.Common.Chat;

namespace K2RL.Gym;

/// <summary>Per-environment bounds on actions and episodes, and the penalty for a bad action.</summary>
public sealed record EnvironmentLimits
{
    /// <summary>Longest action accepted, in UTF-16 chars; longer ones are rejected with a penalty.</summary>
    public int MaxActionChars { get; init; } = 16_384;

    /// <summary>Turns (actions) per episode; the episode is truncated when they run out.</summary>
    public int MaxTurns { get; init; } = 1;

    /// <summary>Subtracted from the reward for a malformed action (bad tool call, oversized, invalid encoding).</summary>
    public double InvalidActionPenalty { get; init; } = 0.1;

    /// <summary>Reward of a degenerate (repetitive) response.</summary>
    public double DegeneratePenalty { get; init; } = 0.5;
}

/// <summary>
/// What most environments share: episode bookkeeping (seed, options, turn, done), the bad-input checks every
/// action goes through (oversized, invalid encoding, a step after the end), the turn limit, and the snapshot
/// header. Subclasses implement <see cref="OnResetAsync"/>, <see cref="OnStepAsync"/> and their own snapshot
/// payload (<see cref="WriteState"/>/<see cref="ReadState"/>).
/// </summary>
public abstract class EnvironmentBase : IEnvironment
{
    private bool started;

    protected EnvironmentBase(string name, EnvironmentLimits? limits = null)
    {
        Name = name;
        Limits = limits ?? new EnvironmentLimits();
    }

    public string Name { get; }

    public EnvironmentLimits Limits { get; }

    /// <summary>The seed of the current episode.</summary>
    protected long Seed { get; private set; }

    protected ResetOptions Options { get; private set; } = ResetOptions.Default;

    /// <summary>Actions taken in this episode so far.</summary>
    protected int Turn { get; private set; }

    /// <summary>True once the episode terminated or was truncated.</summary>
    protected bool IsDone { get; private set; }

    /// <summary>Version of this environment's own snapshot payload; bump when <see cref="WriteState"/> changes.</summary>
    protected virtual ushort StateVersion => 1;

    public ValueTask<Observation> ResetAsync(long seed, ResetOptions? options = null, CancellationToken ct = default)
    {
        Seed = seed;
        Options = options ?? ResetOptions.Default;
        Turn = 0;
        IsDone = false;
        started = true;
        return OnResetAsync(ct);
    }

    public async ValueTask<StepResult> StepAsync(string action, CancellationToken ct = default)
    {
        if (!started)
        {
            throw new InvalidOperationException($"{Name}: Step before Reset");
        }

        if (IsDone)
        {
            return Rejected("the episode is over; reset to start another", countTurn: false, terminated: true);
        }

        if (action.Length > Limits.MaxActionChars)
        {
            return Rejected($"action too long ({action.Length} chars, limit {Limits.MaxActionChars})");
        }

        if (!TextChecks.IsWellFormedText(action, out string? encodingError))
        {
            return Rejected(encodingError!);
        }

        Turn++;
        var result = await OnStepAsync(action, ct);
        if (!result.Done && Turn >= Limits.MaxTurns)
        {
            result = result with { Truncated = true };
        }

        IsDone = result.Done;
        return result;
    }

    public ValueTask<byte[]> SnapshotAsync(CancellationToken ct = default)
    {
        if (!started)
        {
            throw new InvalidOperationException($"{Name}: Snapshot before Reset");
        }

        var w = new SnapshotWriter(Name, StateVersion);
        w.Write(Seed).Write((int)Options.Split).Write(Options.Difficulty).Write(Options.Extra).Write(Turn).Write(IsDone);
        WriteState(w);
        return ValueTask.FromResult(w.ToArray());
    }

    public ValueTask RestoreAsync(ReadOnlyMemory<byte> state, CancellationToken ct = default)
    {
        var r = new SnapshotReader(state, Name);
        if (r.PayloadVersion != StateVersion)
        {
            throw new SnapshotException($"{Name}: snapshot payload version {r.PayloadVersion}, this build writes {StateVersion}");
        }

        long seed = r.ReadInt64();
        int split = r.ReadInt32();
        int difficulty = r.ReadInt32();
        var extra = r.ReadMap();
        int turn = r.ReadInt32();
        bool done = r.ReadBoolean();
        if (split is < 0 or > 1)
        {
            throw new SnapshotException($"{Name}: snapshot has unknown split {split}");
        }

        Seed = seed;
        Options = new ResetOptions { Split = (Split)split, Difficulty = difficulty, Extra = extra };
        Turn = turn;
        IsDone = done;
        ReadState(r);
        r.EnsureEnd();
        started = true;
        return ValueTask.CompletedTask;
    }

    public virtual ValueTask CloseAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return CloseAsync();
    }

    protected abstract ValueTask<Observation> OnResetAsync(CancellationToken ct);

    protected abstract ValueTask<StepResult> OnStepAsync(string action, CancellationToken ct);

    /// <summary>Writes what <see cref="ReadState"/> needs beyond seed, options, turn and done.</summary>
    protected abstract void WriteState(SnapshotWriter w);

    protected abstract void ReadState(SnapshotReader r);

    /// <summary>A penalized step whose observation tells the policy what was wrong.</summary>
    protected StepResult Invalid(string error, bool terminated = false, Observation? observation = null) =>
        new(observation ?? Observation.Of(Message.UserText("Invalid action: " + error)), -Limits.InvalidActionPenalty,
            terminated, false, new StepInfo { Error = error });

    private StepResult Rejected(string error, bool countTurn = true, bool terminated = false)
    {
        if (countTurn)
        {
            Turn++;
        }

        var result = Invalid(error, terminated);
        if (!result.Done && Turn >= Limits.MaxTurns)
        {
            result = result with { Truncated = true };
        }

        IsDone = IsDone || result.Done;
        return result;
    }
}

/// <summary>Checks on action text.</summary>
public static class TextChecks
{
    /// <summary>
    /// False when the text holds U+FFFD (what invalid UTF-8 decodes to) or a lone surrogate, with a message
    /// giving the position.
    /// </summary>
    public static bool IsWellFormedText(string text, out string? error)
    {
        var span = text.AsSpan();
        if (span.IndexOfAnyInRange('\uD800', '\uDFFF') < 0 && !span.Contains('\uFFFD'))
        {
            error = null;
            return true;
        }

        for (int i = 0; i < span.Length; i++)
        {
            char c = span[i];
            if (c == '\uFFFD')
            {
                error = $"invalid UTF-8 in the action (replacement character at char {i})";
                return false;
            }

            if (char.IsHighSurrogate(c) && i + 1 < span.Length && char.IsLowSurrogate(span[i + 1]))
            {
                i++;
                continue;
            }

            if (char.IsSurrogate(c))
            {
                error = $"invalid encoding in the action (lone surrogate at char {i})";
                return false;
            }
        }

        error = null;
        return true;
    }

    /// <summary>Decodes UTF-8 as the Gym sees actions: invalid sequences become U+FFFD, which the environment rejects.</summary>
    public static string DecodeUtf8(ReadOnlySpan<byte> bytes) => System.Text.Encoding.UTF8.GetString(bytes);
}
