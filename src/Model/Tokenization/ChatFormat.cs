using System.Text;

namespace K2RL.Model.Tokenization;

/// <summary>A call the assistant makes: Kimi-K2 ids look like <c>functions.get_weather:0</c>; arguments are JSON text.</summary>
public sealed record ToolCall(string Id, string Arguments);

/// <summary>One chat turn. Role: system, user, assistant or tool; a tool turn names the call it answers.</summary>
public sealed record ChatMessage(string Role, string Content, IReadOnlyList<ToolCall>? ToolCalls = null, string? ToolCallId = null);

/// <summary>
/// Kimi-K2's chat layout, one turn per message:
/// <code>
/// &lt;|im_system|&gt;system&lt;|im_middle|&gt;CONTENT&lt;|im_end|&gt;
/// &lt;|im_user|&gt;user&lt;|im_middle|&gt;CONTENT&lt;|im_end|&gt;
/// &lt;|im_assistant|&gt;assistant&lt;|im_middle|&gt;CONTENT[&lt;|tool_calls_section_begin|&gt;
///     (&lt;|tool_call_begin|&gt;ID&lt;|tool_call_argument_begin|&gt;ARGS&lt;|tool_call_end|&gt;)*&lt;|tool_calls_section_end|&gt;]&lt;|im_end|&gt;
/// &lt;|im_system|&gt;tool&lt;|im_middle|&gt;## Return of ID\nCONTENT&lt;|im_end|&gt;
/// </code>
/// and, to ask for a reply, the assistant header <c>&lt;|im_assistant|&gt;assistant&lt;|im_middle|&gt;</c>. No default
/// system prompt is added. Message text is encoded with specials off, so content can never inject a
/// control token; the text between two specials is encoded in one piece, so for content without special
/// text <c>Encode(messages)</c> equals <c>tokenizer.Encode(Render(messages))</c>.
/// </summary>
public static class ChatFormat
{
    /// <summary>The conversation as text, specials spelled out (for logs and tests).</summary>
    public static string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var text = new StringBuilder();
        foreach (var (_, part) in Parts(messages, addGenerationPrompt))
        {
            text.Append(part);
        }

        return text.ToString();
    }

    /// <summary>The conversation as token ids.</summary>
    public static int[] Encode(BpeTokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var ids = new List<int>();
        foreach (var (special, part) in Parts(messages, addGenerationPrompt))
        {
            ids.AddRange(special ? [tokenizer.SpecialTokenId(part)] : tokenizer.Encode(part, allowSpecial: false));
        }

        return [.. ids];
    }

    /// <summary>One turn, to append to a running sequence (token-in, token-out episodes).</summary>
    public static int[] EncodeMessage(BpeTokenizer tokenizer, ChatMessage message) => Encode(tokenizer, [message], false);

    /// <summary>The assistant header that asks the model for a reply.</summary>
    public static int[] GenerationPrompt(BpeTokenizer tokenizer) => Encode(tokenizer, [], true);

    /// <summary>Specials and text runs in order; adjacent text is joined so it is split and merged as one.</summary>
    private static IEnumerable<(bool Special, string Text)> Parts(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var pending = new StringBuilder();
        var parts = new List<(bool, string)>();
        void Special(string token)
        {
            if (pending.Length > 0)
            {
                parts.Add((false, pending.ToString()));
                pending.Clear();
            }

            parts.Add((true, token));
        }

        foreach (var message in messages)
        {
            switch (message.Role)
            {
                case "system":
                case "user":
                case "assistant":
                    Special(message.Role switch { "system" => SpecialTokens.ImSystem, "user" => SpecialTokens.ImUser, _ => SpecialTokens.ImAssistant });
                    pending.Append(message.Role);
                    Special(SpecialTokens.ImMiddle);
                    pending.Append(message.Content);
                    break;
                case "tool":
                    Special(SpecialTokens.ImSystem);
                    pending.Append("tool");
                    Special(SpecialTokens.ImMiddle);
                    pending.Append("## Return of ").Append(message.ToolCallId
                        ?? throw new ArgumentException("a tool message needs the ToolCallId it answers", nameof(messages))).Append('\n');
                    pending.Append(message.Content);
                    break;
                default:
                    throw new ArgumentException($"unknown role '{message.Role}' (system, user, assistant, tool)", nameof(messages));
            }

            if (message.ToolCalls is { Count: > 0 } calls)
            {
                if (message.Role != "assistant")
                {
                    throw new ArgumentException($"only assistant messages carry tool calls, not '{message.Role}'", nameof(messages));
                }

                Special(SpecialTokens.ToolCallsSectionBegin);
                foreach (var call in calls)
                {
                    Special(SpecialTokens.ToolCallBegin);
                    pending.Append(call.Id);
                    Special(SpecialTokens.ToolCallArgumentBegin);
                    pending.Append(call.Arguments);
                    Special(SpecialTokens.ToolCallEnd);
                }

                Special(SpecialTokens.ToolCallsSectionEnd);
            }

            Special(SpecialTokens.ImEnd);
        }

        if (addGenerationPrompt)
        {
            Special(SpecialTokens.ImAssistant);
            pending.Append("assistant");
            Special(SpecialTokens.ImMiddle);
        }

        return parts;
    }
}
