using System.Globalization;
using System.Text.RegularExpressions;
using K2RL.Common.Chat;
using K2RL.Gym.Sandbox;

namespace K2RL.Gym;

/// <summary>What a verifier judges: the response text and the task it answers.</summary>
public sealed record VerifyRequest(string Response, GymTask Task);

/// <summary>A verifier's judgment: the reward, whether the answer counts as correct, and why.</summary>
public readonly record struct VerifierResult(double Reward, bool Passed, string Reason)
{
    public static VerifierResult Pass(string reason = "correct") => new(1, true, reason);

    public static VerifierResult Fail(string reason, double reward = 0) => new(reward, false, reason);
}

/// <summary>Scores a response against a task's reference (answer, tests, format). Never throws on bad responses.</summary>
public interface IVerifier
{
    string Name { get; }

    ValueTask<VerifierResult> VerifyAsync(VerifyRequest request, CancellationToken ct = default);
}

/// <summary>Pulls the final answer out of a response: the last <c>Answer: X</c> line, else the last <c>\boxed{X}</c>.</summary>
public static partial class AnswerExtractor
{
    [GeneratedRegex(@"^\s*(?:\*\*)?(?:final\s+)?answer(?:\*\*)?\s*[:=]\s*(?:\*\*)?(.*?)(?:\*\*)?\s*$",
        RegexOptions.IgnoreCase | RegexOptions.Multiline)]
    private static partial Regex AnswerLine();

    [GeneratedRegex(@"\\boxed\{([^{}]*)\}")]
    private static partial Regex Boxed();

    public static bool TryExtract(string response, out string answer)
    {
        string text = response.Replace(ChatTokens.ImEnd, "\n");
        var lines = AnswerLine().Matches(text);
        if (lines.Count > 0)
        {
            answer = lines[^1].Groups[1].Value.Trim().TrimEnd('.').Trim();
            return answer.Length > 0;
        }

        var boxed = Boxed().Matches(text);
        if (boxed.Count > 0)
        {
            answer = boxed[^1].Groups[1].Value.Trim();
            return answer.Length > 0;
        }

        answer = "";
        return false;
    }

    /// <summary>Canonical form for exact comparison: trimmed, lower case, whitespace removed, outer quotes dropped.</summary>
    public static string Normalize(string s)
    {
        var t = s.Trim().Trim('"', '\'', '`').Trim();
        return new string(t.Where(c => !char.IsWhiteSpace(c)).ToArray()).ToLowerInvariant();
    }
}

/// <summary>
/// Degenerate output: long runs of one character, or text whose word 8-grams mostly repeat (worked solutions that
/// reuse a phrase stay well below that). Judged on a finished response's text by <see cref="DegenerateVerifier"/> and
/// <see cref="GuardedVerifier"/>. The rollout engine does not call it: it stops a looping generation on token ids
/// with its token twin, <c>K2RL.Rollout.TokenRepetition</c>.
/// </summary>
public static class TextRepetition
{
    public static bool IsDegenerate(string text, out string reason)
    {
        int run = 1;
        for (int i = 1; i < text.Length; i++)
        {
            run = text[i] == text[i - 1] && !char.IsWhiteSpace(text[i]) ? run + 1 : 1;
            if (run >= 80)
            {
                reason = $"a run of {run} '{text[i]}' characters";
                return true;
            }
        }

        var words = text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        const int n = 8;
        if (words.Length >= 64)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            int repeats = 0;
            for (int i = 0; i + n <= words.Length; i++)
            {
                if (!seen.Add(string.Join(' ', words, i, n)))
                {
                    repeats++;
                }
            }

            double fraction = repeats / (double)(words.Length - n + 1);
            if (fraction > 0.5)
            {
                reason = $"{fraction:P0} of its word {n}-grams repeat";
                return true;
            }
        }

        reason = "";
        return false;
    }
}

/// <summary>The extracted answer equals the task's answer after <see cref="AnswerExtractor.Normalize"/>.</summary>
public sealed class ExactMatchVerifier : IVerifier
{
    public string Name => "exact";

    public ValueTask<VerifierResult> VerifyAsync(VerifyRequest request, CancellationToken ct = default)
    {
        if (!AnswerExtractor.TryExtract(request.Response, out string answer))
        {
            return ValueTask.FromResult(VerifierResult.Fail("no 'Answer:' line"));
        }

        return ValueTask.FromResult(AnswerExtractor.Normalize(answer) == AnswerExtractor.Normalize(request.Task.Answer)
            ? VerifierResult.Pass()
            : VerifierResult.Fail($"answer '{answer}' is not '{request.Task.Answer}'"));
    }
}

/// <summary>
/// The extracted answer is a number within a tolerance of the task's: |a − b| ≤ tol·max(1, |b|). The tolerance is the
/// task's <c>tolerance</c> param, else the constructor's. Accepts thousands separators and a leading <c>$</c>.
/// </summary>
public sealed class NumericVerifier(double defaultTolerance = 1e-9) : IVerifier
{
    public string Name => "numeric";

    public ValueTask<VerifierResult> VerifyAsync(VerifyRequest request, CancellationToken ct = default)
    {
        if (!AnswerExtractor.TryExtract(request.Response, out string answer))
        {
            return ValueTask.FromResult(VerifierResult.Fail("no 'Answer:' line"));
        }

        if (!TryParse(answer, out double got))
        {
            return ValueTask.FromResult(VerifierResult.Fail($"answer '{answer}' is not a number"));
        }

        if (!TryParse(request.Task.Answer, out double want))
        {
            return ValueTask.FromResult(VerifierResult.Fail($"task answer '{request.Task.Answer}' is not a number"));
        }

        double tol = request.Task.Params.TryGetValue("tolerance", out string? t) &&
                     double.TryParse(t, CultureInfo.InvariantCulture, out double parsed)
            ? parsed
            : defaultTolerance;
        bool ok = Math.Abs(got - want) <= tol * Math.Max(1, Math.Abs(want));
        return ValueTask.FromResult(ok ? VerifierResult.Pass() : VerifierResult.Fail($"{got} is not {want}"));
    }

    public static bool TryParse(string s, out double value)
    {
        string t = s.Trim().TrimStart('$').Replace(",", "").Replace("_", "").Trim();
        return double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }
}

/// <summary>A format check: the response has an answer line (and, when given, matches a pattern).</summary>
public sealed class FormatVerifier(string? pattern = null) : IVerifier
{
    private readonly Regex? regex = pattern is null ? null : new Regex(pattern, RegexOptions.Singleline, TimeSpan.FromSeconds(1));

    public string Name => "format";

    public ValueTask<VerifierResult> VerifyAsync(VerifyRequest request, CancellationToken ct = default)
    {
        if (!AnswerExtractor.TryExtract(request.Response, out _))
        {
            return ValueTask.FromResult(VerifierResult.Fail("no 'Answer:' line"));
        }

        try
        {
            if (regex is not null && !regex.IsMatch(request.Response))
            {
                return ValueTask.FromResult(VerifierResult.Fail($"does not match {regex}"));
            }
        }
        catch (RegexMatchTimeoutException)
        {
            return ValueTask.FromResult(VerifierResult.Fail("format check timed out"));
        }

        return ValueTask.FromResult(VerifierResult.Pass("well formed"));
    }
}

/// <summary>Penalizes degenerate (repetitive) output with <c>-penalty</c>; passes everything else with reward 0.</summary>
public sealed class DegenerateVerifier(double penalty = 0.5) : IVerifier
{
    public string Name => "degenerate";

    public ValueTask<VerifierResult> VerifyAsync(VerifyRequest request, CancellationToken ct = default) =>
        ValueTask.FromResult(TextRepetition.IsDegenerate(request.Response, out string why)
            ? VerifierResult.Fail("degenerate output: " + why, -penalty)
            : new VerifierResult(0, true, "not degenerate"));
}

/// <summary>Countdown: the answer expression uses only the task's numbers (each at most once) and equals the target.</summary>
public sealed class CountdownVerifier : IVerifier
{
    public string Name => "countdown";

    public ValueTask<VerifierResult> VerifyAsync(VerifyRequest request, CancellationToken ct = default)
    {
        if (!AnswerExtractor.TryExtract(request.Response, out string answer))
        {
            return ValueTask.FromResult(VerifierResult.Fail("no 'Answer:' line"));
        }

        int eq = answer.IndexOf('=');
        if (eq >= 0)
        {
            answer = answer[..eq];
        }

        if (!Expression.TryEvaluate(answer, out decimal value, out string? error, out var used))
        {
            return ValueTask.FromResult(VerifierResult.Fail($"cannot evaluate '{answer}': {error}"));
        }

        var available = request.Task.Params["numbers"].Split(',').Select(decimal.Parse).ToList();
        foreach (decimal n in used)
        {
            if (!available.Remove(n))
            {
                return ValueTask.FromResult(VerifierResult.Fail($"{n} is not an available number (or used twice)"));
            }
        }

        decimal target = decimal.Parse(request.Task.Params["target"], CultureInfo.InvariantCulture);
        return ValueTask.FromResult(value == target
            ? VerifierResult.Pass()
            : VerifierResult.Fail($"'{answer}' = {Expression.Format(value)}, not {target}"));
    }
}

/// <summary>
/// Runs the program in the response (the last fenced code block, else the whole text) against the task's tests in a
/// sandbox, all tests at once. Reward 1 when every test passes, else 0; the reason names the first failing test and how it failed.
/// </summary>
public sealed partial class UnitTestVerifier(ISandbox sandbox, SandboxLimits? limits = null) : IVerifier
{
    [GeneratedRegex(@"```[A-Za-z0-9_+-]*[ \t]*\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex Fence();

    public string Name => "unit_tests";

    public async ValueTask<VerifierResult> VerifyAsync(VerifyRequest request, CancellationToken ct = default)
    {
        string program = ExtractProgram(request.Response);
        string interpreter = request.Task.Params.GetValueOrDefault("interpreter", "python3");
        if (request.Task.Tests.Count == 0)
        {
            return VerifierResult.Fail("task has no tests");
        }

        // The tests run concurrently (each in its own sandbox); the first failing one, in order, is reported.
        var runs = await Task.WhenAll(request.Task.Tests.Select(test => sandbox.RunAsync(
            new SandboxRequest(interpreter, program, test.Stdin) { Limits = limits ?? new SandboxLimits() }, ct).AsTask()));
        for (int i = 0; i < runs.Length; i++)
        {
            var run = runs[i];
            if (run.Status == SandboxStatus.SandboxError)
            {
                return VerifierResult.Fail("sandbox error: " + run.Stderr);
            }

            if (!run.Succeeded)
            {
                string tail = run.Stderr.Length > 300 ? run.Stderr[^300..] : run.Stderr;
                return VerifierResult.Fail($"test {i}: {run.Status} (exit {run.ExitCode}) {tail}".Trim());
            }

            if (Canonical(run.Stdout) != Canonical(request.Task.Tests[i].ExpectedStdout))
            {
                return VerifierResult.Fail($"test {i}: wrong output");
            }
        }

        return VerifierResult.Pass($"{request.Task.Tests.Count} tests passed");
    }

    public static string ExtractProgram(string response)
    {
        var blocks = Fence().Matches(response);
        return blocks.Count > 0 ? blocks[^1].Groups[1].Value : response;
    }

    private static string Canonical(string s) =>
        string.Join('\n', s.Replace("\r\n", "\n").TrimEnd().Split('\n').Select(l => l.TrimEnd()));
}

/// <summary>
/// The verifier the built-in environments use: a degenerate response gets the degenerate penalty, a response without
/// an answer (when the inner verifier needs one) gets the format penalty, anything else goes to the inner verifier.
/// </summary>
public sealed class GuardedVerifier(IVerifier inner, double degeneratePenalty = 0.5, double formatPenalty = 0.1,
    bool requireAnswerLine = true) : IVerifier
{
    public string Name => inner.Name;

    public IVerifier Inner => inner;

    public ValueTask<VerifierResult> VerifyAsync(VerifyRequest request, CancellationToken ct = default)
    {
        if (TextRepetition.IsDegenerate(request.Response, out string why))
        {
            return ValueTask.FromResult(VerifierResult.Fail("degenerate output: " + why, -degeneratePenalty));
        }

        if (requireAnswerLine && !AnswerExtractor.TryExtract(request.Response, out _))
        {
            return ValueTask.FromResult(VerifierResult.Fail("no 'Answer:' line", -formatPenalty));
        }

        return inner.VerifyAsync(request, ct);
    }
}
