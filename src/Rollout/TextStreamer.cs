namespace K2RL.Rollout;

/// <summary>
/// Turns a growing list of token ids into text pieces for streaming: decodes the whole response each time
/// and hands out what is new, holding back a trailing partial UTF-8 character (decoded as U+FFFD).
/// </summary>
public sealed class TextStreamer(Func<IReadOnlyList<int>, string> detokenize)
{
    private readonly List<int> ids = [];
    private int emitted;

    public string Text { get; private set; } = "";

    /// <summary>Adds a token; returns the text it completes (often empty mid-character).</summary>
    public string Push(int token)
    {
        ids.Add(token);
        string text = detokenize(ids);
        int stable = text.Length;
        while (stable > emitted && text[stable - 1] == '\uFFFD')
        {
            stable--;
        }

        Text = text;
        if (stable <= emitted)
        {
            return "";
        }

        string piece = text[emitted..stable];
        emitted = stable;
        return piece;
    }

    /// <summary>Whatever was held back (a character the response ended in the middle of).</summary>
    public string Flush()
    {
        string rest = Text.Length > emitted ? Text[emitted..] : "";
        emitted = Text.Length;
        return rest;
    }
}
