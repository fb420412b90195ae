using System.Text.Json;
using K2RL.Common;

namespace K2RL.Gym.Critic.Workbench;

/// <summary>
/// One prompt of the evaluator's input file: the prompt, its K &gt;= 2 responses, the task tags that pick
/// task-specific rubrics, and optionally one verifier reward per response (the closed loop's ground truth).
/// </summary>
public sealed record JudgeInputItem
{
    /// <summary>The line of the input file it came from (1-based).</summary>
    public required int Line { get; init; }

    /// <summary>The line's <c>id</c>, or <c>line N</c>.</summary>
    public required string Id { get; init; }

    public required string Prompt { get; init; }

    public required IReadOnlyList<string> Responses { get; init; }

    public IReadOnlyList<string> Tags { get; init; } = [];

    public IReadOnlyList<double>? Rewards { get; init; }
}

/// <summary>
/// Reads the input of <c>k2rl gym judge</c>: JSON Lines, one object a line,
/// <code>{"id": "q1", "prompt": "...", "responses": ["...", "..."], "tags": ["chat"], "rewards": [1, 0]}</code>
/// (<c>id</c>, <c>tags</c> and <c>rewards</c> optional; blank lines skipped). A malformed line (not JSON, not an
/// object, an unknown key, fewer than 2 responses, a response that is not text, rewards that do not match the
/// responses) is a <see cref="ConfigException"/> starting with <c>file:line:</c>.
/// </summary>
public static class JudgeInputReader
{
    private static readonly string[] Keys = ["id", "prompt", "responses", "tags", "rewards"];

    public static IReadOnlyList<JudgeInputItem> ReadFile(string path)
    {
        if (!File.Exists(path))
        {
            throw new ConfigException($"{path}: no such input file");
        }

        return Read(File.ReadLines(path), path);
    }

    public static IReadOnlyList<JudgeInputItem> Read(IEnumerable<string> lines, string file)
    {
        var items = new List<JudgeInputItem>();
        int number = 0;
        foreach (string line in lines)
        {
            number++;
            if (!string.IsNullOrWhiteSpace(line))
            {
                items.Add(ParseLine(line, $"{file}:{number}", number));
            }
        }

        if (items.Count == 0)
        {
            throw new ConfigException($"{file}: no input lines (one JSON object a line: prompt, responses, optional tags and rewards)");
        }

        return items;
    }

    private static JudgeInputItem ParseLine(string line, string at, int number)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(line);
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{at}: not JSON ({e.Message})");
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new ConfigException($"{at}: expected a JSON object, got {Kind(root)}");
            }

            string? unknown = root.EnumerateObject().Select(p => p.Name).FirstOrDefault(n => !Keys.Contains(n));
            if (unknown is not null)
            {
                throw new ConfigException($"{at}: unknown key '{unknown}' (expected {string.Join(", ", Keys)})");
            }

            string prompt = root.TryGetProperty("prompt", out var pe) && pe.ValueKind == JsonValueKind.String
                ? pe.GetString()!
                : throw new ConfigException($"{at}: 'prompt' must be text" + (root.TryGetProperty("prompt", out _) ? $", got {Kind(pe)}" : " (missing)"));
            var responses = Strings(root, "responses", at) ?? throw new ConfigException($"{at}: 'responses' is missing (a list of at least 2 texts)");
            if (responses.Count < 2)
            {
                throw new ConfigException($"{at}: {responses.Count} response(s); judging needs at least 2");
            }

            var rewards = Rewards(root, at, responses.Count);
            string id = root.TryGetProperty("id", out var ie) && ie.ValueKind is JsonValueKind.String or JsonValueKind.Number
                ? ie.ToString()
                : root.TryGetProperty("id", out _) ? throw new ConfigException($"{at}: 'id' must be text or a number, got {Kind(ie)}") : $"line {number}";
            return new JudgeInputItem
            {
                Line = number, Id = id, Prompt = prompt, Responses = responses, Tags = Strings(root, "tags", at) ?? [], Rewards = rewards,
            };
        }
    }

    private static List<string>? Strings(JsonElement root, string key, string at)
    {
        if (!root.TryGetProperty(key, out var e))
        {
            return null;
        }

        if (e.ValueKind != JsonValueKind.Array)
        {
            throw new ConfigException($"{at}: '{key}' must be a list of texts, got {Kind(e)}");
        }

        var list = new List<string>();
        int i = 0;
        foreach (var x in e.EnumerateArray())
        {
            list.Add(x.ValueKind == JsonValueKind.String ? x.GetString()! : throw new ConfigException($"{at}: {key}[{i}] must be text, got {Kind(x)}"));
            i++;
        }

        return list;
    }

    private static List<double>? Rewards(JsonElement root, string at, int k)
    {
        if (!root.TryGetProperty("rewards", out var e) || e.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() != k)
        {
            throw new ConfigException($"{at}: 'rewards' must be a list of {k} numbers (one per response), got " +
                                      (e.ValueKind == JsonValueKind.Array ? $"{e.GetArrayLength()} values" : Kind(e)));
        }

        return e.EnumerateArray().Select((x, i) => x.ValueKind == JsonValueKind.Number && x.TryGetDouble(out double v) && double.IsFinite(v)
            ? v
            : throw new ConfigException($"{at}: rewards[{i}] must be a finite number, got {Kind(x)}")).ToList();
    }

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "a list",
        JsonValueKind.String => "text",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };
}
