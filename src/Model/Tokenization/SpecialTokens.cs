using K2RL.Common.Chat;

namespace K2RL.Model.Tokenization;

/// <summary>
/// The special tokens every K2RL tokenizer carries, in id order: the first one gets the id right after the
/// last rank. The ten chat and tool-call tokens are Kimi-K2's (<see cref="ChatTokens"/>); <see cref="EndOfText"/>
/// is ours, for separating packed pretraining documents (padding needs no token: the loss mask covers it).
/// </summary>
public static class SpecialTokens
{
    public const string EndOfText = "<|endoftext|>";

    /// <summary>All eleven, in id order (ids = number of ranks + index).</summary>
    public static IReadOnlyList<string> All { get; } = [.. ChatTokens.All, EndOfText];
}
