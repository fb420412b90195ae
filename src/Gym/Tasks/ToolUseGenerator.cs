using System.Globalization;
using System.Text.Json;
using K2RL.Common.Chat;

namespace K2RL.Gym.Tasks;

/// <summary>
/// Shopping questions that need the tools: unit prices of made-up items are only reachable through
/// <c>lookup</c>, and the total through <c>calculator</c>. Difficulty d: d items (plus distractors in the table),
/// quantities up to 3d. The solution is a whole transcript in the chat format: lookup calls, their results, a
/// calculator call, its result, then the answer.
/// </summary>
public sealed class ToolUseGenerator : TaskGenerator
{
    public const string SystemPrompt =
        "You can call tools. Look up every unit price with `lookup` and compute with `calculator`; " +
        "when you know the total, reply with a line 'Answer: <number>'.";

    private static readonly string[] Syllables =
        ["zor", "bel", "kin", "tra", "vo", "lum", "ska", "rip", "dex", "mo", "qua", "fen", "tul", "gri", "sna"];

    public override string Kind => "tool_use";

    protected override GymTask Create(ref GymRandom rng, int difficulty)
    {
        int items = Math.Clamp(difficulty, 1, 5);
        int distractors = rng.Next(1, 3);
        var table = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var names = new List<string>();
        while (names.Count < items + distractors)
        {
            string name = rng.Pick(Syllables) + rng.Pick(Syllables) + (rng.Next(0, 2) == 0 ? rng.Pick(Syllables) : "");
            if (table.ContainsKey(name))
            {
                continue;
            }

            decimal price = rng.Next(1, 2000) / 100m * (difficulty >= 3 ? 10 : 1);
            table[name] = Expression.Format(price);
            names.Add(name);
        }

        var wanted = names.Take(items).ToList();
        var quantities = new List<int>();
        foreach (var _ in wanted)
        {
            quantities.Add(rng.Next(1, 3 * difficulty + 1));
        }

        string expression = string.Join(" + ", wanted.Select((w, i) => $"{quantities[i]} * {table[w]}"));
        Expression.TryEvaluate(expression, out decimal total, out _, out _);
        string answer = Expression.Format(total);
        string ask = string.Join(" and ", wanted.Select((w, i) => $"{quantities[i]} {w}"));

        var lookups = wanted.Select((w, i) => ToolCall.Create("lookup", i,
            JsonSerializer.Serialize(new Dictionary<string, string> { ["key"] = w }))).ToList();
        var calc = ToolCall.Create("calculator", lookups.Count,
            JsonSerializer.Serialize(new Dictionary<string, string> { ["expression"] = expression }));
        List<Message> transcript = [new(Role.Assistant, "I need the unit prices first.", ToolCalls: lookups)];
        transcript.AddRange(lookups.Zip(wanted, (call, w) => Message.ToolResult(call.Id, table[w])));
        transcript.Add(new(Role.Assistant, "Now the total.", ToolCalls: [calc]));
        transcript.Add(Message.ToolResult(calc.Id, answer));
        transcript.Add(Message.AssistantText($"The total is {answer}.\nAnswer: {answer}"));

        return new GymTask
        {
            Kind = Kind,
            Id = JsonSerializer.Serialize(table) + "|" + ask,
            SystemPrompt = SystemPrompt,
            Prompt = $"How much do {ask} cost in total?",
            Answer = answer,
            Solution = ChatFormat.Render(transcript),
            Params = new Dictionary<string, string>
            {
                ["table"] = JsonSerializer.Serialize(table),
                ["tolerance"] = "0.000001",
            },
        };
    }

    /// <summary>The lookup table a task carries.</summary>
    public static IReadOnlyDictionary<string, string> Table(GymTask task) =>
        JsonSerializer.Deserialize<Dictionary<string, string>>(task.Params["table"]) ?? [];
}
