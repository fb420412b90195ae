namespace K2RL.Common.Chat;

/// <summary>
/// The ten Kimi-K2 chat and tool-call special tokens, as text. The one definition: the Gym renders and parses
/// them, the tokenizer gives them ids in this order (see K2RL.Model.Tokenization.SpecialTokens).
/// </summary>
public static class ChatTokens
{
    public const string ImSystem = "<|im_system|>";
    public const string ImUser = "<|im_user|>";
    public const string ImAssistant = "<|im_assistant|>";
    public const string ImMiddle = "<|im_middle|>";
    public const string ImEnd = "<|im_end|>";
    public const string ToolCallsSectionBegin = "<|tool_calls_section_begin|>";
    public const string ToolCallBegin = "<|tool_call_begin|>";
    public const string ToolCallArgumentBegin = "<|tool_call_argument_begin|>";
    public const string ToolCallEnd = "<|tool_call_end|>";
    public const string ToolCallsSectionEnd = "<|tool_calls_section_end|>";

    /// <summary>All ten, in tokenizer id order; also for checks that a text holds none.</summary>
    public static IReadOnlyList<string> All { get; } =
    [
        ImSystem, ImUser, ImAssistant, ImMiddle, ImEnd,
        ToolCallsSectionBegin, ToolCallBegin, ToolCallArgumentBegin, ToolCallEnd, ToolCallsSectionEnd,
    ];
}
