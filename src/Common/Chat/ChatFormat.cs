using System.Text;
using System.Text.Json;

namespace K2RL.Common.Chat;

/// <summary>One piece of a rendered conversation: a special token, or a run of text between two.</summary>
public readonly record struct ChatSegment(bool Special, string Text);

/// <summary>
/// Kimi-K2's chat layout, one turn per message (the one definition; the tokenizer encodes these segments):
/// <code>
/// [&lt;|im_system|&gt;tool_declare&lt;|im_middle|&gt;[TOOLS JSON]&lt;|im_end|&gt;]
/// &lt;|im_system|&gt;system&lt;|im_middle|&gt;CONTENT&lt;|im_end|&gt;
/// &lt;|im_user|&gt;user&lt;|im_middle|&gt;CONTENT&lt;|im_end|&gt;
/// &lt;|im_assistant|&gt;assistant&lt;|im_middle|&gt;CONTENT[&lt;|tool_calls_section_begin|&gt;
///     (&lt;|tool_call_begin|&gt;ID&lt;|tool_call_argument_begin|&gt;ARGS&lt;|tool_call_end|&gt;)*&lt;|tool_calls_section_end|&gt;]&lt;|im_end|&gt;
/// &lt;|im_system|&gt;tool&lt;|im_middle|&gt;## Return of ID\nCONTENT&lt;|im_end|&gt;
/// </code>
/// and, to ask for a reply, the assistant header <see cref="AssistantPrefix"/>. No default system prompt is added.
/// A tool call's id reads <c>functions.NAME:INDEX</c>.
/// </summary>
public static partial class ChatFormat
{
    /// <summary>The text that opens an assistant turn (what generation continues from).</summary>
    public static string AssistantPrefix => ChatTokens.ImAssistant + "assistant" + ChatTokens.ImMiddle;

    /// <summary>The id of the INDEX-th call of tool NAME in one action: <c>functions.NAME:INDEX</c>.</summary>
    public static string ToolCallId(string name, int index) => $"functions.{name}:{index}";

    /// <summary>Renders messages (and the tool declarations, when any) as one chat-format string.</summary>
    public static string Render(IReadOnlyList<Message> messages, IReadOnlyList<ToolSpec>? tools = null, bool addGenerationPrompt = false)
    {
        var sb = new StringBuilder();
        foreach (var segment in Segments(messages, tools, addGenerationPrompt))
        {
            sb.Append(segment.Text);
        }

        return sb.ToString();
    }

    /// <summary>Appends one message: system/user/assistant turns, and tool results as <c>## Return of ID</c>.</summary>
    public static void RenderMessage(StringBuilder sb, Message m)
    {
        foreach (var segment in Segments([m]))
        {
            sb.Append(segment.Text);
        }
    }

    /// <summary>Formats tool calls as they appear in an assistant action: the whole section, even for no calls.</summary>
    public static string FormatToolCalls(IEnumerable<ToolCall> calls)
    {
        var writer = new SegmentWriter();
        writer.ToolCallSection(calls);
        return string.Concat(writer.Segments.Select(s => s.Text));
    }

    /// <summary>One call: <c>functions.calculator:0</c> with <c>{"expression": "2+3"}</c>.</summary>
    public static string FormatToolCall(string name, int index, object arguments) =>
        FormatToolCalls([ToolCall.Create(name, index, JsonSerializer.Serialize(arguments))]);

    /// <summary>
    /// The conversation as specials and text runs in order; adjacent text is joined, so a tokenizer splits and
    /// merges each run as one piece. A tool result without an id renders <c>## Return of ?</c>.
    /// </summary>
    public static IReadOnlyList<ChatSegment> Segments(
        IReadOnlyList<Message> messages, IReadOnlyList<ToolSpec>? tools = null, bool addGenerationPrompt = false)
    {
        var w = new SegmentWriter();
        if (tools is { Count: > 0 })
        {
            w.Turn(ChatTokens.ImSystem, "tool_declare").Text(ToolSpec.DeclarationJson(tools)).Special(ChatTokens.ImEnd);
        }

        foreach (var m in messages)
        {
            switch (m.Role)
            {
                case Role.System:
                    w.Turn(ChatTokens.ImSystem, "system").Text(m.Content);
                    break;
                case Role.User:
                    w.Turn(ChatTokens.ImUser, "user").Text(m.Content);
                    break;
                case Role.Assistant:
                    w.Turn(ChatTokens.ImAssistant, "assistant").Text(m.Content);
                    break;
                case Role.Tool:
                    w.Turn(ChatTokens.ImSystem, "tool").Text("## Return of ").Text(m.ToolCallId ?? "?").Text("\n").Text(m.Content);
                    break;
                default:
                    throw new ArgumentException($"unknown role {(int)m.Role} (system, user, assistant, tool)", nameof(messages));
            }

            if (m.ToolCalls is { Count: > 0 } calls)
            {
                if (m.Role != Role.Assistant)
                {
                    throw new ArgumentException($"only assistant messages carry tool calls, not {m.Role}", nameof(messages));
                }

                w.ToolCallSection(calls);
            }

            w.Special(ChatTokens.ImEnd);
        }

        if (addGenerationPrompt)
        {
            w.Turn(ChatTokens.ImAssistant, "assistant");
        }

        return w.Segments;
    }

    private sealed class SegmentWriter
    {
        private readonly StringBuilder pending = new();
        private readonly List<ChatSegment> segments = [];

        public List<ChatSegment> Segments
        {
            get
            {
                Flush();
                return segments;
            }
        }

        public SegmentWriter Special(string token)
        {
            Flush();
            segments.Add(new ChatSegment(true, token));
            return this;
        }

        public SegmentWriter Text(string text)
        {
            pending.Append(text);
            return this;
        }

        /// <summary>A turn's header: <c>HEADER name &lt;|im_middle|&gt;</c>.</summary>
        public SegmentWriter Turn(string header, string name) => Special(header).Text(name).Special(ChatTokens.ImMiddle);

        public void ToolCallSection(IEnumerable<ToolCall> calls)
        {
            Special(ChatTokens.ToolCallsSectionBegin);
            foreach (var call in calls)
            {
                Special(ChatTokens.ToolCallBegin).Text(call.Id).Special(ChatTokens.ToolCallArgumentBegin).Text(call.ArgumentsJson)
                    .Special(ChatTokens.ToolCallEnd);
            }

            Special(ChatTokens.ToolCallsSectionEnd);
        }

        private void Flush()
        {
            if (pending.Length > 0)
            {
                segments.Add(new ChatSegment(false, pending.ToString()));
                pending.Clear();
            }
        }
    }
}
