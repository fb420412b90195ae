using System.Text;
using System.Text.Json;

namespace K2RL.Gym;

/// <summary>
/// The chat format's special-token strings (Kimi-K2 style). The tokenizer maps them to ids; the Gym only
/// needs the text. A tool call in an assistant action reads
/// <c>&lt;|tool_calls_section_begin|&gt;&lt;|tool_call_begin|&gt;functions.NAME:INDEX&lt;|tool_call_argument_begin|&gt;{json}&lt;|tool_call_end|&gt;&lt;|tool_calls_section_end|&gt;</c>.
/// </summary>
public static class ChatFormat
{
    public const string System = "<|im_system|>";
    public const string User = "<|im_user|>";
    public const string Assistant = "<|im_assistant|>";
    public const string Middle = "<|im_middle|>";
    public const string End = "<|im_end|>";
    public const string ToolCallsBegin = "<|tool_calls_section_begin|>";
    public const string ToolCallBegin = "<|tool_call_begin|>";
    public const string ToolCallArgumentBegin = "<|tool_call_argument_begin|>";
    public const string ToolCallEnd = "<|tool_call_end|>";
    public const string ToolCallsEnd = "<|tool_calls_section_end|>";

    /// <summary>Every special-token string, for checks that a text holds none.</summary>
    public static readonly IReadOnlyList<string> SpecialTokens =
    [
        System, User, Assistant, Middle, End, ToolCallsBegin, ToolCallBegin, ToolCallArgumentBegin, ToolCallEnd,
        ToolCallsEnd,
    ];

    /// <summary>The id of the INDEX-th call of tool NAME in one action: <c>functions.NAME:INDEX</c>.</summary>
    public static string ToolCallId(string name, int index) => $"functions.{name}:{index}";

    /// <summary>Formats tool calls as they appear in an assistant action (arguments serialized as JSON objects).</summary>
    public static string FormatToolCalls(IEnumerable<ToolCall> calls)
    {
        var sb = new StringBuilder(ToolCallsBegin);
        foreach (var call in calls)
        {
            sb.Append(ToolCallBegin).Append(call.Id).Append(ToolCallArgumentBegin).Append(call.ArgumentsJson)
                .Append(ToolCallEnd);
        }

        return sb.Append(ToolCallsEnd).ToString();
    }

    /// <summary>One call: <c>functions.calculator:0</c> with <c>{"expression": "2+3"}</c>.</summary>
    public static string FormatToolCall(string name, int index, object arguments) =>
        FormatToolCalls([new ToolCall(ToolCallId(name, index), name, index, JsonSerializer.Serialize(arguments))]);

    /// <summary>Renders messages (and the tool declarations, when any) as one chat-format string.</summary>
    public static string Render(IReadOnlyList<Message> messages, IReadOnlyList<ToolSpec>? tools = null)
    {
        var sb = new StringBuilder();
        if (tools is { Count: > 0 })
        {
            sb.Append(System).Append("tool_declare").Append(Middle).Append(ToolSpec.DeclarationJson(tools)).Append(End);
        }

        foreach (var m in messages)
        {
            RenderMessage(sb, m);
        }

        return sb.ToString();
    }

    /// <summary>Appends one message: system/user/assistant turns, and tool results as <c>## Return of ID</c>.</summary>
    public static void RenderMessage(StringBuilder sb, Message m)
    {
        switch (m.Role)
        {
            case Role.System:
                sb.Append(System).Append("system").Append(Middle).Append(m.Content).Append(End);
                break;
            case Role.User:
                sb.Append(User).Append("user").Append(Middle).Append(m.Content).Append(End);
                break;
            case Role.Assistant:
                sb.Append(Assistant).Append("assistant").Append(Middle).Append(m.Content).Append(End);
                break;
            case Role.Tool:
                sb.Append(System).Append("tool").Append(Middle).Append("## Return of ").Append(m.ToolCallId ?? "?")
                    .Append('\n').Append(m.Content).Append(End);
                break;
        }
    }

    /// <summary>The text that opens an assistant turn (what generation continues from).</summary>
    public static string AssistantPrefix => Assistant + "assistant" + Middle;
}

/// <summary>A tool call parsed from an action. <see cref="ArgumentsJson"/> is a JSON object.</summary>
public sealed record ToolCall(string Id, string Name, int Index, string ArgumentsJson);

/// <summary>Splits an assistant action into its text and its tool calls.</summary>
public static class ToolCallParser
{
    /// <summary>
    /// Parses the tool-call section of <paramref name="action"/>. Returns false with a message saying what is
    /// wrong when the section is malformed (unclosed, a bad id, arguments that are not a JSON object).
    /// An action without a section parses to no calls.
    /// </summary>
    public static bool TryParse(string action, out string content, out IReadOnlyList<ToolCall> calls, out string? error)
    {
        calls = [];
        error = null;
        int begin = action.IndexOf(ChatFormat.ToolCallsBegin, StringComparison.Ordinal);
        if (begin < 0)
        {
            content = action;
            if (action.Contains(ChatFormat.ToolCallBegin, StringComparison.Ordinal) ||
                action.Contains(ChatFormat.ToolCallsEnd, StringComparison.Ordinal))
            {
                error = $"tool call outside a {ChatFormat.ToolCallsBegin} section";
                return false;
            }

            return true;
        }

        content = action[..begin].TrimEnd();
        int end = action.IndexOf(ChatFormat.ToolCallsEnd, begin, StringComparison.Ordinal);
        if (end < 0)
        {
            error = $"tool-call section not closed with {ChatFormat.ToolCallsEnd}";
            return false;
        }

        string section = action[(begin + ChatFormat.ToolCallsBegin.Length)..end];
        var list = new List<ToolCall>();
        int pos = 0;
        while (true)
        {
            int cb = section.IndexOf(ChatFormat.ToolCallBegin, pos, StringComparison.Ordinal);
            string between = cb < 0 ? section[pos..] : section[pos..cb];
            if (between.Trim().Length > 0)
            {
                error = $"unexpected text in the tool-call section: '{Clip(between.Trim(), 40)}'";
                return false;
            }

            if (cb < 0)
            {
                break;
            }

            int ab = section.IndexOf(ChatFormat.ToolCallArgumentBegin, cb, StringComparison.Ordinal);
            int ce = section.IndexOf(ChatFormat.ToolCallEnd, cb, StringComparison.Ordinal);
            if (ce < 0)
            {
                error = $"tool call {list.Count} not closed with {ChatFormat.ToolCallEnd}";
                return false;
            }

            if (ab < 0 || ab > ce)
            {
                error = $"tool call {list.Count} has no {ChatFormat.ToolCallArgumentBegin}";
                return false;
            }

            string id = section[(cb + ChatFormat.ToolCallBegin.Length)..ab].Trim();
            string args = section[(ab + ChatFormat.ToolCallArgumentBegin.Length)..ce].Trim();
            if (!TryParseId(id, out string name, out int index))
            {
                error = $"tool call id '{Clip(id, 40)}' is not functions.NAME:INDEX";
                return false;
            }

            if (!IsJsonObject(args))
            {
                error = $"arguments of {id} are not a JSON object: '{Clip(args, 60)}'";
                return false;
            }

            list.Add(new ToolCall(id, name, index, args));
            pos = ce + ChatFormat.ToolCallEnd.Length;
        }

        if (list.Count == 0)
        {
            error = "empty tool-call section";
            return false;
        }

        string after = action[(end + ChatFormat.ToolCallsEnd.Length)..];
        if (after.Trim().Length > 0 && after.Trim() != ChatFormat.End)
        {
            error = "text after the tool-call section";
            return false;
        }

        calls = list;
        return true;
    }

    private static bool TryParseId(string id, out string name, out int index)
    {
        name = "";
        index = -1;
        const string prefix = "functions.";
        if (!id.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }

        int colon = id.LastIndexOf(':');
        if (colon <= prefix.Length || !int.TryParse(id.AsSpan(colon + 1), out index) || index < 0)
        {
            return false;
        }

        name = id[prefix.Length..colon];
        foreach (char c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c == '_' || c == '-'))
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsJsonObject(string text)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            return doc.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    internal static string Clip(string s, int n) => s.Length <= n ? s : s[..n] + "…";
}
