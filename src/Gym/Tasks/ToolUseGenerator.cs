using System.Globalization;
using System.Text;
using System.Text.Json;

namespace K2RL.Gym;

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

        var transcript = new StringBuilder();
        var lookups = wanted.Select((w, i) => new ToolCall(ChatFormat.ToolCallId("lookup", i), "lookup", i,
            JsonSerializer.Serialize(new Dictionary<string, string> { ["key"] = w }))).ToList();
        transcript.Append(ChatFormat.AssistantPrefix).Append("I need the unit prices first.")
            .Append(ChatFormat.FormatToolCalls(lookups)).Append(ChatFormat.End);
        foreach (var (call, w) in lookups.Zip(wanted))
        {
            ChatFormat.RenderMessage(transcript, Message.ToolResult(call.Id, table[w]));
        }

        int calcIndex = lookups.Count;
        var calc = new ToolCall(ChatFormat.ToolCallId("calculator", calcIndex), "calculator", calcIndex,
            JsonSerializer.Serialize(new Dictionary<string, string> { ["expression"] = expression }));
        transcript.Append(ChatFormat.AssistantPrefix).Append("Now the total.")
            .Append(ChatFormat.FormatToolCalls([calc])).Append(ChatFormat.End);
        ChatFormat.RenderMessage(transcript, Message.ToolResult(calc.Id, answer));
        transcript.Append(ChatFormat.AssistantPrefix).Append($"The total is {answer}.\nAnswer: {answer}")
            .Append(ChatFormat.End);

        return new GymTask
        {
            Kind = Kind,
            Id = JsonSerializer.Serialize(table) + "|" + ask,
            SystemPrompt = SystemPrompt,
            Prompt = $"How much do {ask} cost in total?",
            Answer = answer,
            Solution = transcript.ToString(),
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
