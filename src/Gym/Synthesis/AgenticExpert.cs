using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common.Chat;

namespace K2RL.Gym.Synthesis;

/// <summary>
/// The expert program for agentic tasks: reads the conversation so far (as the policy sees it) and writes the next
/// action. It learns facts only from results that validate against the tool's declared result types; when a call of
/// its last turn failed (an error result, or a field of the wrong type) it says so and calls it again with the same
/// arguments; otherwise it takes the next step of the current request (look up, compute with the real calculator,
/// reserve, search) or answers with an <c>Answer:</c> line. Deterministic: the same conversation gives the same action.
/// </summary>
public static class AgenticExpert
{
    public static string Act(AgenticTask task, IReadOnlyList<Message> conversation)
    {
        var facts = new Facts(task);
        var lastFailures = new List<(ToolCall Call, string Why)>();
        int answered = 0, callCount = 0;
        var pending = new Dictionary<string, ToolCall>(StringComparer.Ordinal);
        foreach (var m in conversation)
        {
            if (m.Role == Role.Assistant)
            {
                ChatFormat.TryParseToolCalls(m.Content, out string content, out var calls, out _);
                var all = (m.ToolCalls ?? []).Concat(calls).ToList();
                answered += all.Count == 0 && AnswerExtractor.TryExtract(content, out _) ? 1 : 0;
                callCount += all.Count;
                pending = all.ToDictionary(c => c.Id, StringComparer.Ordinal);
                lastFailures.Clear();
            }
            else if (m.Role == Role.Tool && m.ToolCallId is { } id && pending.TryGetValue(id, out var call))
            {
                if (facts.Learn(call, m.Content) is { } why)
                {
                    lastFailures.Add((call, why));
                }
            }
        }

        if (conversation.Count > 0 && conversation[^1].Role == Role.Tool && lastFailures.Count > 0)
        {
            string text = string.Join(" ", lastFailures.Select(f => $"{f.Call.Name} {f.Why}.")) + " Calling it again.";
            return Action(text, lastFailures.Select((f, i) => ToolCall.Create(f.Call.Name, callCount + i, f.Call.ArgumentsJson)).ToList());
        }

        return answered < task.Requests.Count ? Next(task, task.Requests[answered], facts, callCount) : "Answer: done";
    }

    /// <summary>The next step of one request, given what is known.</summary>
    private static string Next(AgenticTask task, AgenticRequest r, Facts facts, int index)
    {
        string get = task.Domain.Tool(SimToolRole.Get).Spec.Name;
        var record = facts.Record(r.Target);
        switch (r.Kind)
        {
            case RequestKind.Price or RequestKind.Stock or RequestKind.Attribute when record is null:
            case RequestKind.Cost or RequestKind.Reserve when record is null:
                return Call($"Looking up {r.Target}.", get, index, new JsonObject { ["name"] = r.Target });
            case RequestKind.Price:
                string price = Number(record!["price"]!);
                return $"{r.Target} costs {price}.\nAnswer: {price}";
            case RequestKind.Stock:
                string stock = Number(record!["stock"]!);
                return $"{r.Target}: {stock} in stock.\nAnswer: {stock}";
            case RequestKind.Attribute:
                string value = record![task.Domain.Attribute]!.GetValue<string>();
                return $"The {task.Domain.Attribute} of {r.Target} is {value}.\nAnswer: {value}";
            case RequestKind.Cost:
                string expression = AgenticTask.CostExpression(r, decimal.Parse(Number(record!["price"]!), CultureInfo.InvariantCulture));
                return facts.Computed.TryGetValue(expression, out string? total)
                    ? $"{r.Quantity} x {r.Target} cost {total}.\nAnswer: {total}"
                    : Call("Computing the total.", BuiltinTools.CalculatorSpec.Name, index, new JsonObject { ["expression"] = expression });
            case RequestKind.Reserve:
                return Reserve(task, r.Target, r.Quantity, facts, index, $"Reserved {r.Quantity} of {r.Target}");
            case RequestKind.Search when facts.Found is null:
                return Call($"Searching for {task.Domain.Noun}s up to {Expression.Format(r.MaxPrice)}.", task.Domain.Tool(SimToolRole.Search).Spec.Name,
                    index, new JsonObject { ["max_price"] = AgenticCatalog.Number(r.MaxPrice) });
            case RequestKind.Search:
                string names = string.Join(", ", facts.Found!);
                return $"{names}.\nAnswer: {names}";
            default:
                var unknown = (facts.Found ?? []).Where(n => facts.Record(n) is null).ToList();
                if (unknown.Count > 0)
                {
                    return Action("Looking up their prices.",
                        unknown.Select((n, i) => ToolCall.Create(get, index + i, new JsonObject { ["name"] = n }.ToJsonString())).ToList());
                }

                string cheapest = (facts.Found ?? []).MinBy(n => decimal.Parse(Number(facts.Record(n)!["price"]!), CultureInfo.InvariantCulture))!;
                return Reserve(task, cheapest, r.Quantity, facts, index, $"The cheapest is {cheapest}; reserved {r.Quantity}");
        }
    }

    private static string Reserve(AgenticTask task, string name, int quantity, Facts facts, int index, string said) =>
        facts.Reserved.TryGetValue((name, quantity), out string? id)
            ? $"{said}: {id}.\nAnswer: {id}"
            : Call($"Reserving {quantity} of {name}.", task.Domain.Tool(SimToolRole.Reserve).Spec.Name, index,
                new JsonObject { ["name"] = name, ["quantity"] = quantity });

    private static string Call(string text, string tool, int index, JsonObject args) =>
        Action(text, [ToolCall.Create(tool, index, args.ToJsonString())]);

    private static string Action(string text, IReadOnlyList<ToolCall> calls) => text + ChatFormat.FormatToolCalls(calls);

    private static string Number(JsonNode n) => n.ToJsonString();

    /// <summary>What the expert knows from the results that validated.</summary>
    private sealed class Facts(AgenticTask task)
    {
        private readonly Dictionary<string, JsonObject> records = new(StringComparer.Ordinal);

        public Dictionary<string, string> Computed { get; } = new(StringComparer.Ordinal);

        public Dictionary<(string, int), string> Reserved { get; } = [];

        public List<string>? Found { get; private set; }

        public JsonObject? Record(string name) => records.GetValueOrDefault(name);

        /// <summary>Takes in one result; returns why it failed (to retry), or null when it validated.</summary>
        public string? Learn(ToolCall call, string content)
        {
            if (call.Name == BuiltinTools.CalculatorSpec.Name)
            {
                if (content.StartsWith("error:", StringComparison.Ordinal) || RubricJudge.IsError(content))
                {
                    return "failed";
                }

                Computed[JsonNode.Parse(call.ArgumentsJson)!["expression"]!.GetValue<string>()] = content;
                return null;
            }

            var tool = task.Tools.FirstOrDefault(t => t.Spec.Name == call.Name);
            JsonObject? result;
            try
            {
                result = JsonNode.Parse(content) as JsonObject;
            }
            catch (JsonException)
            {
                return "returned something that is not JSON";
            }

            if (tool is null || result is null)
            {
                return "returned something unexpected";
            }

            if (result["error"] is { } error)
            {
                return error.GetValue<string>() == "timeout" ? "timed out" : $"failed ({error.GetValue<string>()})";
            }

            foreach (var (field, kind) in tool.ResultTypes)
            {
                if (result[field]?.GetValueKind() is not { } got || got != kind)
                {
                    return $"returned {field} as {Kind(result[field]?.GetValueKind())}, not {Kind(kind)}";
                }
            }

            var args = JsonNode.Parse(call.ArgumentsJson)!;
            switch (tool.Role)
            {
                case SimToolRole.Get:
                    records[result["name"]!.GetValue<string>()] = result;
                    break;
                case SimToolRole.Search:
                    Found = result["results"]!.AsArray().Select(x => x!.GetValue<string>()).ToList();
                    break;
                default:
                    Reserved[(args["name"]!.GetValue<string>(), args["quantity"]!.GetValue<int>())] = result["reservation"]!.GetValue<string>();
                    break;
            }

            return null;
        }

        private static string Kind(JsonValueKind? k) => k switch
        {
            JsonValueKind.String => "a string",
            JsonValueKind.Number => "a number",
            JsonValueKind.Array => "a list",
            null => "nothing",
            _ => k.Value.ToString().ToLowerInvariant(),
        };
    }
}
