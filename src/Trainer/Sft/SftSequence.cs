using K2RL.Common.Chat;
using K2RL.Gym.Synthesis;
using K2RL.Model.Tokenization;

namespace K2RL.Trainer.Sft;

/// <summary>
/// One record as token ids, with <see cref="Trained"/>[i] true where token i is one the policy generates (assistant
/// content, its tool-call section and the closing <c>&lt;|im_end|&gt;</c>): the SFT loss is on those tokens only.
/// </summary>
public sealed record SftSequence(string Id, int[] Tokens, bool[] Trained)
{
    /// <summary>Tokens the loss is on.</summary>
    public int TrainedTokens => Trained.Count(t => t);

    /// <summary>The first <paramref name="length"/> tokens (a record longer than the context, cut).</summary>
    public SftSequence Truncate(int length) => length >= Tokens.Length ? this : this with { Tokens = Tokens[..length], Trained = Trained[..length] };
}

/// <summary>
/// Renders an <see cref="SftRecord"/> token-in/token-out, exactly as the rollout engine holds the same conversation
/// (<see cref="K2RL.Rollout.EnginePolicy"/>, <see cref="K2RL.Rollout.Episodes.EpisodeRunner"/>): the tool declarations
/// and the messages before the first assistant turn encoded in one piece (the episode's opening prompt), then each
/// later message encoded on its own; an assistant turn is the generation prompt <c>&lt;|im_assistant|&gt;assistant&lt;|im_middle|&gt;</c>
/// (context) followed by what the model generates: the content, the tool-call section and <c>&lt;|im_end|&gt;</c> (trained).
/// System, user and tool turns are context.
/// </summary>
public static class SftRenderer
{
    public static SftSequence Render(BpeTokenizer tokenizer, SftRecord record)
    {
        var messages = record.Messages;
        int first = 0;
        while (first < messages.Count && messages[first].Role != Role.Assistant)
        {
            first++;
        }

        var tokens = new List<int>();
        var trained = new List<bool>();
        void Add(ReadOnlySpan<int> ids, bool train)
        {
            foreach (int id in ids)
            {
                tokens.Add(id);
                trained.Add(train);
            }
        }

        Add(ChatEncoder.Encode(tokenizer, messages.Take(first).ToList(), record.Tools), false);
        int header = ChatEncoder.GenerationPrompt(tokenizer).Length;
        for (int i = first; i < messages.Count; i++)
        {
            var ids = ChatEncoder.EncodeMessage(tokenizer, messages[i]);
            bool assistant = messages[i].Role == Role.Assistant;
            Add(ids.AsSpan(0, assistant ? header : ids.Length), false);
            if (assistant)
            {
                Add(ids.AsSpan(header), true);
            }
        }

        return new SftSequence(record.Id, [.. tokens], [.. trained]);
    }
}
