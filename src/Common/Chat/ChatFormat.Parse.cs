using System.Text.Json;

namespace K2RL.Common.Chat;

/// <summary>Parsing: an assistant action's tool calls, and a whole rendered conversation back into messages.</summary>
public static partial class ChatFormat
{
    private const string ReturnOf = "## Return of ";

    /// <summary>
    /// Parses the tool-call section of <paramref name="action"/> into its text (trimmed at the end) and its calls.
    /// Returns false with a message saying what is wrong when the section is malformed (unclosed, a bad id,
    /// arguments that are not a JSON object). An action without a section parses to no calls.
    /// </summary>
    public static bool TryParseToolCalls(string action, out string content, out IReadOnlyList<ToolCall> calls, out string? error)
    {
        bool ok = TryParseSection(action, out int begin, out calls, out error);
        content = begin < 0 ? action : action[..begin].TrimEnd();
        return ok;
    }

    /// <summary>
    /// Parses a conversation rendered by <see cref="Render"/> back into its messages and tool declarations.
    /// The inverse of <see cref="Render"/> for content free of <c>&lt;|im_end|&gt;</c> and for compact
    /// parameter schemas; an assistant's tool-call section comes back as <see cref="Message.ToolCalls"/>.
    /// </summary>
    public static bool TryParse(string text, out IReadOnlyList<Message> messages, out IReadOnlyList<ToolSpec> tools, out string? error)
    {
        var list = new List<Message>();
        messages = list;
        tools = [];
        error = null;
        int pos = 0;
        while (pos < text.Length)
        {
            string? header = new[] { ChatTokens.ImSystem, ChatTokens.ImUser, ChatTokens.ImAssistant }
                .FirstOrDefault(h => text.AsSpan(pos).StartsWith(h, StringComparison.Ordinal));
            int middle = header is null ? -1 : text.IndexOf(ChatTokens.ImMiddle, pos + header.Length, StringComparison.Ordinal);
            int end = middle < 0 ? -1 : text.IndexOf(ChatTokens.ImEnd, middle, StringComparison.Ordinal);
            if (header is null || middle < 0 || end < 0)
            {
                error = $"turn {list.Count} at offset {pos} is not HEADER name{ChatTokens.ImMiddle}...{ChatTokens.ImEnd}: '{Clip(text[pos..], 40)}'";
                return false;
            }

            string name = text[(pos + header.Length)..middle];
            string body = text[(middle + ChatTokens.ImMiddle.Length)..end];
            pos = end + ChatTokens.ImEnd.Length;
            switch (header, name)
            {
                case (ChatTokens.ImSystem, "system"):
                    list.Add(Message.SystemText(body));
                    break;
                case (ChatTokens.ImUser, "user"):
                    list.Add(Message.UserText(body));
                    break;
                case (ChatTokens.ImAssistant, "assistant"):
                    if (!TryParseSection(body, out int begin, out var calls, out error))
                    {
                        return false;
                    }

                    list.Add(begin < 0 ? Message.AssistantText(body) : new Message(Role.Assistant, body[..begin], ToolCalls: calls));
                    break;
                case (ChatTokens.ImSystem, "tool") when body.StartsWith(ReturnOf, StringComparison.Ordinal) && body.Contains('\n'):
                    int newline = body.IndexOf('\n');
                    list.Add(Message.ToolResult(body[ReturnOf.Length..newline], body[(newline + 1)..]));
                    break;
                case (ChatTokens.ImSystem, "tool_declare") when list.Count == 0 && tools.Count == 0:
                    if (!TryParseDeclarations(body, out tools, out error))
                    {
                        return false;
                    }

                    break;
                default:
                    error = $"turn {list.Count}: '{Clip(header + name, 40)}' is not a system, user, assistant, tool or leading tool_declare turn";
                    return false;
            }
        }

        return true;
    }

    /// <summary>Finds and parses the tool-call section; <paramref name="begin"/> is where it starts, or -1 without one.</summary>
    private static bool TryParseSection(string action, out int begin, out IReadOnlyList<ToolCall> calls, out string? error)
    {
        calls = [];
        error = null;
        begin = action.IndexOf(ChatTokens.ToolCallsSectionBegin, StringComparison.Ordinal);
        if (begin < 0)
        {
            if (action.Contains(ChatTokens.ToolCallBegin, StringComparison.Ordinal) ||
                action.Contains(ChatTokens.ToolCallsSectionEnd, StringComparison.Ordinal))
            {
                error = $"tool call outside a {ChatTokens.ToolCallsSectionBegin} section";
                return false;
            }

            return true;
        }

        int end = action.IndexOf(ChatTokens.ToolCallsSectionEnd, begin, StringComparison.Ordinal);
        if (end < 0)
        {
            error = $"tool-call section not closed with {ChatTokens.ToolCallsSectionEnd}";
            return false;
        }

        string section = action[(begin + ChatTokens.ToolCallsSectionBegin.Length)..end];
        var list = new List<ToolCall>();
        int pos = 0;
        while (true)
        {
            int cb = section.IndexOf(ChatTokens.ToolCallBegin, pos, StringComparison.Ordinal);
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

            int ab = section.IndexOf(ChatTokens.ToolCallArgumentBegin, cb, StringComparison.Ordinal);
            int ce = section.IndexOf(ChatTokens.ToolCallEnd, cb, StringComparison.Ordinal);
            if (ce < 0)
            {
                error = $"tool call {list.Count} not closed with {ChatTokens.ToolCallEnd}";
                return false;
            }

            if (ab < 0 || ab > ce)
            {
                error = $"tool call {list.Count} has no {ChatTokens.ToolCallArgumentBegin}";
                return false;
            }

            string id = section[(cb + ChatTokens.ToolCallBegin.Length)..ab].Trim();
            string args = section[(ab + ChatTokens.ToolCallArgumentBegin.Length)..ce].Trim();
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
            pos = ce + ChatTokens.ToolCallEnd.Length;
        }

        if (list.Count == 0)
        {
            error = "empty tool-call section";
            return false;
        }

        string after = action[(end + ChatTokens.ToolCallsSectionEnd.Length)..];
        if (after.Trim().Length > 0 && after.Trim() != ChatTokens.ImEnd)
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

    /// <summary>The declarations written by <see cref="ToolSpec.DeclarationJson"/>, read back.</summary>
    private static bool TryParseDeclarations(string json, out IReadOnlyList<ToolSpec> tools, out string? error)
    {
        tools = [];
        error = null;
        try
        {
            using var doc = JsonDocument.Parse(json);
            tools = doc.RootElement.EnumerateArray().Select(e => e.GetProperty("function")).Select(f => new ToolSpec(
                f.GetProperty("name").GetString() ?? "", f.GetProperty("description").GetString() ?? "",
                f.GetProperty("parameters").GetRawText())).ToList();
            return true;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException)
        {
            error = $"tool declarations are not a list of function entries: {e.Message}";
            return false;
        }
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

    private static string Clip(string s, int n) => s.Length <= n ? s : s[..n] + "…";
}
