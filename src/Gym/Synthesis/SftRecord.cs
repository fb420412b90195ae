using System.Text;
using System.Text.Json;
using K2RL.Common;
using K2RL.Common.Chat;

namespace K2RL.Gym.Synthesis;

/// <summary>The judge's decision on a synthesized trajectory: kept or not, by which judge, and why.</summary>
public sealed record SftVerdict(bool Kept, string Judge, string Reason);

/// <summary>
/// One supervised chat record: what <c>k2rl synth</c> writes and <c>k2rl sft</c> reads, one JSON object per line
/// (schema <see cref="Schema"/>). <see cref="Messages"/> use the shared chat vocabulary, so SFT renders them with the
/// same template the rollout engine uses. <see cref="RubricJson"/> and <see cref="ProvenanceJson"/> are JSON objects
/// kept as written (null when absent); the trainer never reads them.
/// </summary>
/// <remarks>
/// On disk:
/// <code>
/// {"id":"…","env":"tool_use","difficulty":2,
///  "messages":[{"role":"system","content":"…"},{"role":"user","content":"…"},
///              {"role":"assistant","content":"…","tool_calls":[{"name":"lookup","index":0,"arguments":{"key":"x"}}]},
///              {"role":"tool","tool_call_id":"functions.lookup:0","content":"1.5"},
///              {"role":"assistant","content":"Answer: 3"}],
///  "tools":[{"name":"lookup","description":"…","parameters":{"type":"object",…}}],
///  "rubric":{…},"verdict":{"kept":true,"judge":"verifier","reason":"answer matches"},"provenance":{…}}
/// </code>
/// </remarks>
public sealed record SftRecord
{
    public const string Schema = "k2rl.sft.v1";

    public required string Id { get; init; }

    public required IReadOnlyList<Message> Messages { get; init; }

    public IReadOnlyList<ToolSpec> Tools { get; init; } = [];

    public string? Env { get; init; }

    public int? Difficulty { get; init; }

    public string? RubricJson { get; init; }

    public SftVerdict? Verdict { get; init; }

    public string? ProvenanceJson { get; init; }

    /// <summary>
    /// Checks what SFT relies on; null when valid, else what is wrong. A record starts with system or user messages,
    /// holds at least one assistant message and ends with one; a tool result answers a call made by the assistant
    /// message before it and not answered yet; tool-call arguments are JSON objects; called tools are declared when
    /// the record declares tools.
    /// </summary>
    public string? Validate()
    {
        if (string.IsNullOrWhiteSpace(Id))
        {
            return "id is empty";
        }

        if (Messages.Count < 2)
        {
            return $"{Messages.Count} message(s); a record needs a prompt and an assistant reply";
        }

        if (Messages[0].Role is not (Role.System or Role.User))
        {
            return $"message 0 is {Name(Messages[0].Role)}; a record starts with a system or user message";
        }

        if (Messages[^1].Role != Role.Assistant)
        {
            return $"the last message is {Name(Messages[^1].Role)}; a record ends with an assistant message";
        }

        var declared = Tools.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var open = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < Messages.Count; i++)
        {
            var m = Messages[i];
            if (m.Role == Role.Tool)
            {
                if (m.ToolCallId is null || !open.Remove(m.ToolCallId))
                {
                    return $"message {i}: tool result for '{m.ToolCallId}', which no earlier assistant message called (or it was answered already)";
                }

                continue;
            }

            if (m.ToolCallId is not null)
            {
                return $"message {i}: only tool messages carry a tool_call_id";
            }

            if (m.Role == Role.Assistant)
            {
                open.Clear();
                foreach (var call in m.ToolCalls ?? [])
                {
                    if (declared.Count > 0 && !declared.Contains(call.Name))
                    {
                        return $"message {i}: calls tool '{call.Name}', which the record does not declare";
                    }

                    if (!open.Add(call.Id))
                    {
                        return $"message {i}: tool call id '{call.Id}' twice";
                    }
                }
            }
            else if (m.ToolCalls is { Count: > 0 })
            {
                return $"message {i}: only assistant messages carry tool_calls";
            }
        }

        return null;
    }

    /// <summary>The record as one line of JSON (no newline).</summary>
    public string ToJsonLine()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteString("id", Id);
            if (Env is not null)
            {
                w.WriteString("env", Env);
            }

            if (Difficulty is int d)
            {
                w.WriteNumber("difficulty", d);
            }

            w.WriteStartArray("messages");
            foreach (var m in Messages)
            {
                WriteMessage(w, m);
            }

            w.WriteEndArray();
            if (Tools.Count > 0)
            {
                w.WriteStartArray("tools");
                foreach (var t in Tools)
                {
                    w.WriteStartObject();
                    w.WriteString("name", t.Name);
                    w.WriteString("description", t.Description);
                    WriteRaw(w, "parameters", t.ParametersSchemaJson);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
            }

            WriteRaw(w, "rubric", RubricJson);
            if (Verdict is not null)
            {
                w.WriteStartObject("verdict");
                w.WriteBoolean("kept", Verdict.Kept);
                w.WriteString("judge", Verdict.Judge);
                w.WriteString("reason", Verdict.Reason);
                w.WriteEndObject();
            }

            WriteRaw(w, "provenance", ProvenanceJson);
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>
    /// Parses and validates one line. Returns false with what is wrong (a key, a message index): the caller adds the
    /// file and line. Unknown keys are refused, so a misspelt field is an error rather than silently dropped.
    /// </summary>
    public static bool TryParse(string line, out SftRecord? record, out string? error)
    {
        record = null;
        try
        {
            using var doc = JsonDocument.Parse(line);
            record = Read(doc.RootElement);
            error = record.Validate();
            if (error is not null)
            {
                record = null;
            }

            return error is null;
        }
        catch (JsonException e)
        {
            error = $"not valid JSON: {e.Message}";
            return false;
        }
        catch (FormatException e)
        {
            error = e.Message;
            return false;
        }
    }

    private static SftRecord Read(JsonElement o)
    {
        Expect(o, JsonValueKind.Object, "the line");
        string? id = null;
        List<Message>? messages = null;
        List<ToolSpec> tools = [];
        string? env = null, rubric = null, provenance = null;
        int? difficulty = null;
        SftVerdict? verdict = null;
        foreach (var p in o.EnumerateObject())
        {
            switch (p.Name)
            {
                case "id": id = Str(p.Value, "id"); break;
                case "env": env = Str(p.Value, "env"); break;
                case "difficulty": difficulty = Int(p.Value, "difficulty"); break;
                case "messages": messages = Array(p.Value, "messages").Select((m, i) => ReadMessage(m, $"messages[{i}]")).ToList(); break;
                case "tools": tools = Array(p.Value, "tools").Select((t, i) => ReadTool(t, $"tools[{i}]")).ToList(); break;
                case "rubric": rubric = Obj(p.Value, "rubric"); break;
                case "provenance": provenance = Obj(p.Value, "provenance"); break;
                case "verdict": verdict = ReadVerdict(p.Value); break;
                default: throw new FormatException($"unknown key '{p.Name}' (known: id, env, difficulty, messages, tools, rubric, verdict, provenance)");
            }
        }

        return new SftRecord
        {
            Id = id ?? throw new FormatException("missing key 'id'"),
            Messages = messages ?? throw new FormatException("missing key 'messages'"),
            Tools = tools,
            Env = env,
            Difficulty = difficulty,
            RubricJson = rubric,
            Verdict = verdict,
            ProvenanceJson = provenance,
        };
    }

    private static Message ReadMessage(JsonElement o, string where)
    {
        Expect(o, JsonValueKind.Object, where);
        Role? role = null;
        string? content = null, toolCallId = null;
        List<ToolCall>? calls = null;
        foreach (var p in o.EnumerateObject())
        {
            switch (p.Name)
            {
                case "role":
                    string r = Str(p.Value, $"{where}.role");
                    role = r switch
                    {
                        "system" => Role.System,
                        "user" => Role.User,
                        "assistant" => Role.Assistant,
                        "tool" => Role.Tool,
                        _ => throw new FormatException($"{where}.role '{r}' is not system, user, assistant or tool"),
                    };
                    break;
                case "content": content = Str(p.Value, $"{where}.content"); break;
                case "tool_call_id": toolCallId = Str(p.Value, $"{where}.tool_call_id"); break;
                case "tool_calls": calls = Array(p.Value, $"{where}.tool_calls").Select((c, i) => ReadCall(c, $"{where}.tool_calls[{i}]")).ToList(); break;
                default: throw new FormatException($"{where}: unknown key '{p.Name}' (known: role, content, tool_call_id, tool_calls)");
            }
        }

        if (role is null || content is null)
        {
            throw new FormatException($"{where}: needs 'role' and 'content'");
        }

        if (ChatTokens.All.FirstOrDefault(t => content.Contains(t, StringComparison.Ordinal)) is string special)
        {
            throw new FormatException($"{where}.content holds the chat special token {special}");
        }

        return new Message(role.Value, content, toolCallId, calls is { Count: > 0 } ? calls : null);
    }

    private static ToolCall ReadCall(JsonElement o, string where)
    {
        Expect(o, JsonValueKind.Object, where);
        string? name = null, args = null;
        int? index = null;
        foreach (var p in o.EnumerateObject())
        {
            switch (p.Name)
            {
                case "name": name = Str(p.Value, $"{where}.name"); break;
                case "index": index = Int(p.Value, $"{where}.index"); break;
                case "arguments": args = Obj(p.Value, $"{where}.arguments"); break;
                default: throw new FormatException($"{where}: unknown key '{p.Name}' (known: name, index, arguments)");
            }
        }

        if (name is null || index is null || args is null)
        {
            throw new FormatException($"{where}: needs 'name', 'index' and 'arguments'");
        }

        return ToolCall.Create(name, index.Value, args);
    }

    private static ToolSpec ReadTool(JsonElement o, string where)
    {
        Expect(o, JsonValueKind.Object, where);
        string? name = null, description = null, parameters = null;
        foreach (var p in o.EnumerateObject())
        {
            switch (p.Name)
            {
                case "name": name = Str(p.Value, $"{where}.name"); break;
                case "description": description = Str(p.Value, $"{where}.description"); break;
                case "parameters": parameters = Obj(p.Value, $"{where}.parameters"); break;
                default: throw new FormatException($"{where}: unknown key '{p.Name}' (known: name, description, parameters)");
            }
        }

        return new ToolSpec(
            name ?? throw new FormatException($"{where}: missing 'name'"),
            description ?? "",
            parameters ?? throw new FormatException($"{where}: missing 'parameters'"));
    }

    private static SftVerdict ReadVerdict(JsonElement o)
    {
        Expect(o, JsonValueKind.Object, "verdict");
        bool? kept = null;
        string judge = "", reason = "";
        foreach (var p in o.EnumerateObject())
        {
            switch (p.Name)
            {
                case "kept":
                    kept = p.Value.ValueKind switch
                    {
                        JsonValueKind.True => true,
                        JsonValueKind.False => false,
                        _ => throw new FormatException("verdict.kept is not true or false"),
                    };
                    break;
                case "judge": judge = Str(p.Value, "verdict.judge"); break;
                case "reason": reason = Str(p.Value, "verdict.reason"); break;
                default: throw new FormatException($"verdict: unknown key '{p.Name}' (known: kept, judge, reason)");
            }
        }

        return new SftVerdict(kept ?? throw new FormatException("verdict: missing 'kept'"), judge, reason);
    }

    private static void WriteMessage(Utf8JsonWriter w, Message m)
    {
        w.WriteStartObject();
        w.WriteString("role", Name(m.Role));
        w.WriteString("content", m.Content);
        if (m.ToolCallId is not null)
        {
            w.WriteString("tool_call_id", m.ToolCallId);
        }

        if (m.ToolCalls is { Count: > 0 } calls)
        {
            w.WriteStartArray("tool_calls");
            foreach (var c in calls)
            {
                w.WriteStartObject();
                w.WriteString("name", c.Name);
                w.WriteNumber("index", c.Index);
                WriteRaw(w, "arguments", c.ArgumentsJson);
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        w.WriteEndObject();
    }

    private static void WriteRaw(Utf8JsonWriter w, string name, string? json)
    {
        if (json is null)
        {
            return;
        }

        w.WritePropertyName(name);
        using var doc = JsonDocument.Parse(json);
        doc.RootElement.WriteTo(w);
    }

    private static string Name(Role role) => role switch
    {
        Role.System => "system",
        Role.User => "user",
        Role.Assistant => "assistant",
        Role.Tool => "tool",
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, null),
    };

    private static void Expect(JsonElement e, JsonValueKind kind, string where)
    {
        if (e.ValueKind != kind)
        {
            throw new FormatException($"{where} is {e.ValueKind}, expected {kind}");
        }
    }

    private static string Str(JsonElement e, string where)
    {
        Expect(e, JsonValueKind.String, where);
        return e.GetString()!;
    }

    private static int Int(JsonElement e, string where) =>
        e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v) ? v : throw new FormatException($"{where} is not an integer");

    private static IEnumerable<JsonElement> Array(JsonElement e, string where)
    {
        Expect(e, JsonValueKind.Array, where);
        return e.EnumerateArray();
    }

    private static string Obj(JsonElement e, string where)
    {
        Expect(e, JsonValueKind.Object, where);
        return e.GetRawText();
    }
}

/// <summary>Reads SFT datasets: JSONL files of <see cref="SftRecord"/>, every bad line an error naming file:line.</summary>
public static class SftDataset
{
    /// <summary>
    /// Every record of <paramref name="path"/> (a .jsonl file, or a directory: its *.jsonl files in name order but
    /// <c>rejected.jsonl</c>, so a <c>k2rl synth</c> output directory reads as its kept records). Blank lines are
    /// skipped; any other line that does not parse or validate throws, naming file:line, and so does a record whose
    /// verdict says the judge did not keep it. A directory without a .jsonl file, or a dataset without a record, is an
    /// error too.
    /// </summary>
    public static IReadOnlyList<SftRecord> Read(string path)
    {
        string[] files = Directory.Exists(path)
            ? Directory.GetFiles(path, "*.jsonl").Where(f => Path.GetFileName(f) != SynthesisPipeline.RejectedFile).Order(StringComparer.Ordinal).ToArray()
            : File.Exists(path) ? [path] : throw new ConfigException($"SFT dataset '{path}' does not exist");
        if (files.Length == 0)
        {
            throw new ConfigException($"SFT dataset directory '{path}' holds no .jsonl file");
        }

        var records = new List<SftRecord>();
        foreach (string file in files)
        {
            int lineNumber = 0;
            foreach (string line in File.ReadLines(file))
            {
                lineNumber++;
                if (line.Length == 0 || string.IsNullOrWhiteSpace(line))
                {
                    continue;
                }

                if (!SftRecord.TryParse(line, out var record, out string? error))
                {
                    throw new CorruptFileException($"{file}:{lineNumber}", error!);
                }

                if (record!.Verdict is { Kept: false } v)
                {
                    throw new CorruptFileException($"{file}:{lineNumber}", $"record '{record.Id}' was rejected by its judge ({v.Judge}: {v.Reason}); SFT trains on kept records only");
                }

                records.Add(record!);
            }
        }

        return records.Count > 0 ? records : throw new ConfigException($"SFT dataset '{path}' holds no record");
    }
}
