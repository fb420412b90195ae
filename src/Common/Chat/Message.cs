using System.Text.Json;

namespace K2RL.Common.Chat;

/// <summary>Who speaks a message. Persisted as its number in snapshots and on the wire: never renumber.</summary>
public enum Role
{
    System = 0,
    User = 1,
    Assistant = 2,
    Tool = 3,
}

/// <summary>
/// One chat message. <see cref="ToolCallId"/> is set on tool results (<c>functions.NAME:INDEX</c>).
/// <see cref="ToolCalls"/> are an assistant's calls, rendered after its content; an environment's action keeps
/// them as text in <see cref="Content"/> instead (snapshots and the Gym wire carry no <see cref="ToolCalls"/>).
/// Equality compares <see cref="ToolCalls"/> by reference, as records do.
/// </summary>
public sealed record Message(Role Role, string Content, string? ToolCallId = null, IReadOnlyList<ToolCall>? ToolCalls = null)
{
    public static Message SystemText(string content) => new(Role.System, content);

    public static Message UserText(string content) => new(Role.User, content);

    public static Message AssistantText(string content) => new(Role.Assistant, content);

    public static Message ToolResult(string toolCallId, string content) => new(Role.Tool, content, toolCallId);
}

/// <summary>
/// A tool call: <see cref="Id"/> reads <c>functions.NAME:INDEX</c> (as written, when parsed);
/// <see cref="ArgumentsJson"/> is a JSON object.
/// </summary>
public sealed record ToolCall(string Id, string Name, int Index, string ArgumentsJson)
{
    /// <summary>The INDEX-th call of tool NAME, with its id spelled <see cref="ChatFormat.ToolCallId"/>.</summary>
    public static ToolCall Create(string name, int index, string argumentsJson) =>
        new(ChatFormat.ToolCallId(name, index), name, index, argumentsJson);
}

/// <summary>A tool the policy may call: its name, what it does, and its parameters as a JSON-schema object.</summary>
public sealed record ToolSpec(string Name, string Description, string ParametersSchemaJson)
{
    /// <summary>The declaration list as JSON (OpenAI-style function entries), as the chat format declares tools.</summary>
    public static string DeclarationJson(IReadOnlyList<ToolSpec> tools)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartArray();
            foreach (var t in tools)
            {
                w.WriteStartObject();
                w.WriteString("type", "function");
                w.WriteStartObject("function");
                w.WriteString("name", t.Name);
                w.WriteString("description", t.Description);
                w.WritePropertyName("parameters");
                using (var schema = JsonDocument.Parse(t.ParametersSchemaJson))
                {
                    schema.RootElement.WriteTo(w);
                }

                w.WriteEndObject();
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }
}
