using K2RL.Common.Chat;

namespace K2RL.Gym;

/// <summary>Which tasks an episode draws from. Train and held-out tasks never coincide (see <see cref="SplitAssigner"/>).</summary>
public enum Split
{
    Train = 0,
    HeldOut = 1,
}

/// <summary>How to start an episode: the split, a difficulty level (1 = easiest), and free-form options for the env.</summary>
public sealed record ResetOptions
{
    internal static readonly IReadOnlyDictionary<string, string> EmptyMap = new Dictionary<string, string>();

    public static readonly ResetOptions Default = new();

    public Split Split { get; init; } = Split.Train;

    public int Difficulty { get; init; } = 1;

    public IReadOnlyDictionary<string, string> Extra { get; init; } = EmptyMap;
}

/// <summary>
/// What the policy sees. After <c>Reset</c>: the whole prompt (system and user messages) and the tools. After
/// <c>Step</c>: only the new messages to append (tool results, feedback), so the rollout engine can append
/// their tokens without re-tokenizing the history (token-in, token-out).
/// </summary>
public sealed record Observation(IReadOnlyList<Message> Messages, IReadOnlyList<ToolSpec> Tools)
{
    public static readonly Observation Empty = new([], []);

    public static Observation Of(params Message[] messages) => new(messages, []);

    /// <summary>The messages in the chat format (tool declarations first when there are tools).</summary>
    public string Render() => ChatFormat.Render(Messages, Tools);
}

/// <summary>
/// Extra facts about a step. <see cref="Correct"/> is the verifier's verdict on a final answer (null when there is
/// none yet); <see cref="Error"/> says what was wrong with the action when it was penalized.
/// </summary>
public sealed record StepInfo
{
    public static readonly StepInfo None = new();

    public bool? Correct { get; init; }

    public string? Error { get; init; }

    /// <summary>
    /// Set when the step did not come from a working environment: it threw, timed out, could not be reached, or gave a
    /// reward that is not a finite number. The episode ends there as failed (not as a scored episode); says why.
    /// </summary>
    public string? Failure { get; init; }

    public IReadOnlyDictionary<string, string> Data { get; init; } = ResetOptions.EmptyMap;
}

/// <summary>The outcome of one action.</summary>
public sealed record StepResult(Observation Observation, double Reward, bool Terminated, bool Truncated, StepInfo Info)
{
    public bool Done => Terminated || Truncated;

    /// <summary>The environment failed at this step (<see cref="StepInfo.Failure"/> says how); the episode is over.</summary>
    public bool Failed => Info.Failure is not null;

    /// <summary>The step of an environment that failed: no observation, reward 0, truncated, with the reason.</summary>
    public static StepResult Failure(string reason) =>
        new(Observation.Empty, 0, false, true, new StepInfo { Correct = false, Failure = reason });
}

/// <summary>
/// A Gym-style environment at the text level. One instance runs one episode at a time; make one per concurrent
/// episode (they are cheap). Every method is asynchronous with <see cref="ValueTask"/>: in-process text
/// environments complete synchronously (no allocation, no thread hop), while the code sandbox and remote
/// environments really wait on I/O.
/// <para>Bad actions (malformed or unknown tool calls, oversized text, invalid encoding) never throw: the step
/// returns an observation saying what was wrong and a penalty. Calling <c>Step</c> before <c>Reset</c> is a
/// programming error and throws <see cref="InvalidOperationException"/>.</para>
/// </summary>
public interface IEnvironment : IAsyncDisposable
{
    /// <summary>The registered name (e.g. <c>arithmetic</c>).</summary>
    string Name { get; }

    /// <summary>Starts an episode for a seed: the same seed and options give the same task.</summary>
    ValueTask<Observation> ResetAsync(long seed, ResetOptions? options = null, CancellationToken ct = default);

    /// <summary>Applies one assistant action (text, possibly with tool calls in the chat format).</summary>
    ValueTask<StepResult> StepAsync(string action, CancellationToken ct = default);

    /// <summary>
    /// The episode's state as bytes (magic + version + env name + state), enough for <see cref="RestoreAsync"/>
    /// on a fresh instance in another process to continue the episode exactly.
    /// </summary>
    ValueTask<byte[]> SnapshotAsync(CancellationToken ct = default);

    /// <summary>Replaces this instance's episode with a snapshot's. Throws <see cref="SnapshotException"/> on bad bytes.</summary>
    ValueTask RestoreAsync(ReadOnlyMemory<byte> state, CancellationToken ct = default);

    /// <summary>Releases what the environment holds (processes, connections). Idempotent.</summary>
    ValueTask CloseAsync();
}
