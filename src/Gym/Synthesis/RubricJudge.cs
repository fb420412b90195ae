using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common.Chat;

namespace K2RL.Gym.Synthesis;

/// <summary>The rubric judge's decision, why, and how many injected failures the trajectory recovered from.</summary>
public sealed record RubricVerdict(bool Passed, string Reason, int Recovered);

/// <summary>
/// The deterministic rubric judge of agentic trajectories (<see cref="AgenticTask.RubricJson"/>), reading the transcript
/// and the simulator's final state. A trajectory passes when: every injected failure is followed, in the next
/// assistant turn, by a retry of the same call (same tool, same arguments); no other call returned an error; every
/// expected tool was called; the checkpoints (the essential calls with their arguments) appear in order among the
/// calls that succeeded; the answer of each request is right (numbers by value, a list of names as a set, a
/// reservation by the id the simulator gave); and the simulator holds exactly the expected reservations. The reason
/// names the first unmet criterion.
/// </summary>
public static class RubricJudge
{
    public static RubricVerdict Judge(AgenticTask task, IReadOnlyList<Message> transcript, SimTable state, IReadOnlyList<Injection> injections)
    {
        var calls = Calls(transcript);
        var failed = injections.Select(i => i.CallId).ToHashSet(StringComparer.Ordinal);
        int recovered = 0;
        foreach (var injection in injections)
        {
            if (!Retried(transcript, injection))
            {
                return Fail($"the injected {injection.Kind} of {injection.CallId} is not followed by a retry of the same call", recovered);
            }

            recovered++;
        }

        if (calls.FirstOrDefault(c => !failed.Contains(c.Call.Id) && c.Result is { } r && IsError(r)) is { Call: not null } bad)
        {
            return Fail($"call {bad.Call.Id} returned an error: {Clip(bad.Result!)}", recovered);
        }

        var used = calls.Select(c => c.Call.Name).ToHashSet(StringComparer.Ordinal);
        var planned = task.PlannedCalls();
        if (planned.Select(p => p.Tool).Distinct().FirstOrDefault(t => !used.Contains(t)) is { } missing)
        {
            return Fail($"expected tool '{missing}' was never called", recovered);
        }

        var succeeded = calls.Where(c => !failed.Contains(c.Call.Id) && c.Result is not null).ToList();
        int at = 0, hit = 0;
        var checkpoints = planned.Where(p => p.Tool != BuiltinTools.CalculatorSpec.Name).ToList();
        // Checkpoints in order; a run of calls to one tool (parallel lookups) may come back in any order, since a
        // failed one is retried in the next turn.
        foreach (var run in Runs(checkpoints))
        {
            int end = at;
            foreach (var (tool, args) in run)
            {
                int found = succeeded.FindIndex(at, c => c.Call.Name == tool && SameArguments(c.Call.ArgumentsJson, args));
                if (found < 0)
                {
                    return Fail($"checkpoint {tool}{args.ToJsonString()} not reached (in order)", recovered);
                }

                end = Math.Max(end, found + 1);
                hit++;
            }

            at = end;
        }

        return Outcome(task, transcript, state, recovered, hit);
    }

    /// <summary>The success criteria: each request's answer and the reservations left behind.</summary>
    private static RubricVerdict Outcome(AgenticTask task, IReadOnlyList<Message> transcript, SimTable state, int recovered, int checkpoints)
    {
        var answers = transcript.Where(m => m.Role == Role.Assistant && m.ToolCalls is not { Count: > 0 })
            .Select(m => AnswerExtractor.TryExtract(m.Content, out string a) ? a : null).OfType<string>().ToList();
        var expected = task.ExpectedAnswers();
        if (answers.Count != expected.Count)
        {
            return Fail($"{answers.Count} answer(s) to {expected.Count} request(s)", recovered);
        }

        var reservations = task.ExpectedReservations();
        if (state.Reservations.Count != reservations.Count
            || state.Reservations.Zip(reservations).Any(p => p.First.Name != p.Second.Name || p.First.Quantity != p.Second.Quantity))
        {
            return Fail($"reservations [{string.Join(", ", state.Reservations.Select(r => $"{r.Name} x{r.Quantity}"))}], expected " +
                        $"[{string.Join(", ", reservations.Select(r => $"{r.Name} x{r.Quantity}"))}]", recovered);
        }

        for (int i = 0; i < expected.Count; i++)
        {
            if (!Matches(task.Requests[i].Kind, answers[i], expected[i]))
            {
                return Fail($"answer {i + 1} is '{answers[i]}', expected '{expected[i]}'", recovered);
            }
        }

        return new RubricVerdict(true, $"rubric met: {expected.Count} answer(s), {reservations.Count} reservation(s), {checkpoints} checkpoint(s), " +
                                       $"{recovered} injected failure(s) recovered", recovered);
    }

    private static IEnumerable<List<(string Tool, JsonObject Arguments)>> Runs(List<(string Tool, JsonObject Arguments)> checkpoints)
    {
        for (int i = 0; i < checkpoints.Count;)
        {
            int j = i;
            while (j < checkpoints.Count && checkpoints[j].Tool == checkpoints[i].Tool)
            {
                j++;
            }

            yield return checkpoints[i..j];
            i = j;
        }
    }

    private static bool Matches(RequestKind kind, string got, string want) => kind switch
    {
        RequestKind.Price or RequestKind.Stock or RequestKind.Cost =>
            NumericVerifier.TryParse(got, out double g) && NumericVerifier.TryParse(want, out double w) && Math.Abs(g - w) <= 1e-9 * Math.Max(1, Math.Abs(w)),
        RequestKind.Search => Names(got).SetEquals(Names(want)),
        _ => AnswerExtractor.Normalize(got) == AnswerExtractor.Normalize(want),
    };

    private static HashSet<string> Names(string list) =>
        list.Split([',', ';'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(AnswerExtractor.Normalize).ToHashSet();

    /// <summary>Every call in the transcript with its result (null when none came back), in order.</summary>
    internal static List<(ToolCall Call, string? Result)> Calls(IReadOnlyList<Message> transcript)
    {
        var list = new List<(ToolCall, string?)>();
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var m in transcript)
        {
            if (m.Role == Role.Assistant)
            {
                index.Clear();
                foreach (var c in m.ToolCalls ?? [])
                {
                    index[c.Id] = list.Count;
                    list.Add((c, null));
                }
            }
            else if (m.Role == Role.Tool && m.ToolCallId is { } id && index.TryGetValue(id, out int i))
            {
                list[i] = (list[i].Item1, m.Content);
            }
        }

        return list;
    }

    /// <summary>The assistant turn after the one that made the failed call calls the same tool with the same arguments.</summary>
    private static bool Retried(IReadOnlyList<Message> transcript, Injection injection)
    {
        int made = -1;
        for (int i = 0; i < transcript.Count; i++)
        {
            var m = transcript[i];
            if (m.Role != Role.Assistant)
            {
                continue;
            }

            if (made >= 0)
            {
                var args = JsonNode.Parse(injection.ArgumentsJson)!.AsObject();
                return (m.ToolCalls ?? []).Any(c => c.Name == injection.Tool && SameArguments(c.ArgumentsJson, args));
            }

            if ((m.ToolCalls ?? []).Any(c => c.Id == injection.CallId))
            {
                made = i;
            }
        }

        return false;
    }

    /// <summary>Arguments equal by value: strings trimmed, numbers as decimals, the same keys.</summary>
    internal static bool SameArguments(string json, JsonObject want)
    {
        var got = JsonNode.Parse(json) as JsonObject;
        if (got is null || got.Count != want.Count)
        {
            return false;
        }

        foreach (var (key, w) in want)
        {
            if (!got.TryGetPropertyValue(key, out var g) || g is null || w is null)
            {
                return false;
            }

            bool same = (g.GetValueKind(), w.GetValueKind()) switch
            {
                (JsonValueKind.String, JsonValueKind.String) => g.GetValue<string>().Trim() == w.GetValue<string>().Trim(),
                (JsonValueKind.Number, JsonValueKind.Number) => decimal.Parse(g.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture)
                                                               == decimal.Parse(w.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture),
                _ => JsonNode.DeepEquals(g, w),
            };
            if (!same)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>A result the simulator or a real tool reported as an error.</summary>
    internal static bool IsError(string result)
    {
        if (result.StartsWith("error:", StringComparison.Ordinal))
        {
            return true;
        }

        try
        {
            return JsonNode.Parse(result) is JsonObject o && o.ContainsKey("error");
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static RubricVerdict Fail(string why, int recovered) => new(false, why, recovered);

    private static string Clip(string s) => s.Length <= 80 ? s : s[..80] + "…";
}
