using System.Text;
using System.Text.RegularExpressions;

namespace K2RL.Gym.Critic;

/// <summary>What a judge said about one response and one mandatory rubric.</summary>
public enum GateVerdict
{
    Complies = 0,
    Violates = 1,
    Unparseable = 2,
}

/// <summary>
/// Mandatory rubrics enforced in the reward, not only in the comparison prompt: each response is put to the judge once
/// per applicable mandatory rubric ("does it violate this?"), and a response judged to violate one has its reward capped
/// by the caller. An unparseable answer does not cap (the gate fails open, and the count is reported).
/// </summary>
public sealed partial class MandatoryGate(IJudge judge, int maxResponseChars = 6000)
{
    [GeneratedRegex(@"\[\[\s*(YES|NO)\s*\]\]", RegexOptions.IgnoreCase)]
    private static partial Regex Marker();

    /// <summary>For each response, the names of the mandatory rubrics it was judged to violate, and the unparseable answers.</summary>
    public async Task<(IReadOnlyList<IReadOnlyList<string>> Violations, int Unparseable)> CheckAsync(string prompt,
        IReadOnlyList<string> responses, IReadOnlyList<Rubric> applicable, CancellationToken ct = default)
    {
        var mandatory = applicable.Where(r => r.Mandatory).ToList();
        var violations = responses.Select(_ => (IReadOnlyList<string>)new List<string>()).ToList();
        if (mandatory.Count == 0 || responses.Count == 0)
        {
            return (violations, 0);
        }

        var questions = new List<(int Response, Rubric Rubric, string Prompt)>();
        for (int i = 0; i < responses.Count; i++)
        {
            foreach (var r in mandatory)
            {
                questions.Add((i, r, BuildPrompt(prompt, responses[i], r)));
            }
        }

        var answers = await judge.JudgeAsync(questions.Select(q => q.Prompt).ToList(), ct);
        int unparseable = 0;
        for (int q = 0; q < questions.Count; q++)
        {
            switch (Parse(q < answers.Count ? answers[q] : null))
            {
                case GateVerdict.Violates:
                    ((List<string>)violations[questions[q].Response]).Add(questions[q].Rubric.Name);
                    break;
                case GateVerdict.Unparseable:
                    unparseable++;
                    break;
            }
        }

        return (violations, unparseable);
    }

    public string BuildPrompt(string prompt, string response, Rubric rubric)
    {
        var sb = new StringBuilder();
        sb.Append("You check one response against one mandatory rule.\n\n");
        sb.Append("## Prompt\n").Append(prompt.Trim()).Append("\n\n");
        sb.Append("## Response\n").Append(response.Length <= maxResponseChars ? response : response[..maxResponseChars] + "\n[... cut]").Append("\n\n");
        sb.Append("## Rule\n").Append(rubric.Name).Append(": ").Append(rubric.Description.Trim()).Append('\n');
        foreach (string c in rubric.Criteria)
        {
            sb.Append("- ").Append(c.Trim()).Append('\n');
        }

        sb.Append("\nDoes the response violate the rule? End with exactly one line: 'Violates: [[YES]]' or 'Violates: [[NO]]'.\n");
        return sb.ToString();
    }

    /// <summary>The last line holding exactly one kind of marker decides; anything else is unparseable. Never throws.</summary>
    public static GateVerdict Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return GateVerdict.Unparseable;
        }

        var lines = text.Split('\n');
        for (int i = lines.Length - 1; i >= 0; i--)
        {
            var markers = Marker().Matches(lines[i]).Select(m => m.Groups[1].Value.ToUpperInvariant()).Distinct().ToList();
            if (markers.Count == 1)
            {
                return markers[0] == "YES" ? GateVerdict.Violates : GateVerdict.Complies;
            }

            if (markers.Count > 1)
            {
                return GateVerdict.Unparseable;
            }
        }

        return GateVerdict.Unparseable;
    }
}
