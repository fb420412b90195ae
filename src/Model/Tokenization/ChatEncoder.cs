using K2RL.Common.Chat;

namespace K2RL.Model.Tokenization;

/// <summary>
/// The chat layout of <see cref="ChatFormat"/> as token ids: each special segment becomes its id, each text run is
/// encoded with specials off, so content can never inject a control token. The text between two specials is
/// encoded in one piece, so for content without special text <c>Encode(messages)</c> equals
/// <c>tokenizer.Encode(ChatFormat.Render(messages))</c>.
/// </summary>
public static class ChatEncoder
{
    /// <summary>The conversation (after the tool declarations, when any) as token ids.</summary>
    public static int[] Encode(BpeTokenizer tokenizer, IReadOnlyList<Message> messages, IReadOnlyList<ToolSpec>? tools = null,
        bool addGenerationPrompt = false)
    {
        var ids = new List<int>();
        foreach (var (special, text) in ChatFormat.Segments(messages, tools, addGenerationPrompt))
        {
            ids.AddRange(special ? [tokenizer.SpecialTokenId(text)] : tokenizer.Encode(text, allowSpecial: false));
        }

        return [.. ids];
    }

    /// <summary>One turn, to append to a running sequence (token-in, token-out episodes).</summary>
    public static int[] EncodeMessage(BpeTokenizer tokenizer, Message message) => Encode(tokenizer, [message]);

    /// <summary>The assistant header that asks the model for a reply.</summary>
    public static int[] GenerationPrompt(BpeTokenizer tokenizer) => Encode(tokenizer, [], addGenerationPrompt: true);
}
