namespace K2RL.Gym.Critic;

/// <summary>
/// Answers comparison prompts with free text (the verdict is parsed afterwards by <see cref="VerdictParser"/>).
/// Takes a batch so a model-backed judge can generate them together. A judge that fails on a prompt returns null
/// for it (counted as unparseable); only cancellation throws.
/// </summary>
public interface IJudge
{
    string Name { get; }

    Task<IReadOnlyList<string?>> JudgeAsync(IReadOnlyList<string> prompts, CancellationToken ct = default);

    /// <summary>
    /// As <see cref="JudgeAsync"/>, with the reason for each missing answer (for the evaluator's report). A judge that
    /// knows why it failed (an HTTP status, a timeout, a prompt the engine refused) says so; this default does not.
    /// </summary>
    async Task<IReadOnlyList<JudgeAnswer>> AnswerAsync(IReadOnlyList<string> prompts, CancellationToken ct = default)
    {
        var texts = await JudgeAsync(prompts, ct);
        return prompts.Select((_, i) => i < texts.Count && texts[i] is { } t
            ? new JudgeAnswer(t, null)
            : new JudgeAnswer(null, $"judge '{Name}' gave no answer")).ToList();
    }
}

/// <summary>A judge's answer to one prompt: its text, or (<see cref="Text"/> null) why there is none.</summary>
public readonly record struct JudgeAnswer(string? Text, string? Failure);

/// <summary>A judge for tests and experiments: a function from prompt to verdict text.</summary>
public sealed class ScriptedJudge(Func<string, string?> answer) : IJudge
{
    public string Name => "scripted";

    /// <summary>Prompts seen, in order.</summary>
    public List<string> Seen { get; } = [];

    public Task<IReadOnlyList<string?>> JudgeAsync(IReadOnlyList<string> prompts, CancellationToken ct = default)
    {
        lock (Seen)
        {
            Seen.AddRange(prompts);
        }

        return Task.FromResult<IReadOnlyList<string?>>(prompts.Select(answer).ToList());
    }

    /// <summary>A judge that prefers the longer of the two responses (ties on equal length).</summary>
    public static ScriptedJudge PreferLonger() => new(p =>
    {
        var (a, b) = CriticProtocol.ResponsesOf(p);
        return a.Length == b.Length ? "Verdict: [[TIE]]" : a.Length > b.Length ? "Verdict: [[A]]" : "Verdict: [[B]]";
    });
}
