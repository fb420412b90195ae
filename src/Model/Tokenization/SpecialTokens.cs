namespace K2RL.Model.Tokenization;

/// <summary>
/// The special tokens every K2RL tokenizer carries, in id order: the first one gets the id right after the
/// last rank. The ten chat and tool-call tokens are Kimi-K2's; <see cref="EndOfText"/> is ours, for separating
/// packed pretraining documents (padding needs no token: the loss mask covers it).
/// </summary>
public static class SpecialTokens
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
    public const string EndOfText = "<|endoftext|>";

    /// <summary>All eleven, in id order (ids = number of ranks + index).</summary>
    public static IReadOnlyList<string> All { get; } =
    [
        ImSystem, ImUser, ImAssistant, ImMiddle, ImEnd,
        ToolCallsSectionBegin, ToolCallBegin, ToolCallArgumentBegin, ToolCallEnd, ToolCallsSectionEnd,
        EndOfText,
    ];
}
