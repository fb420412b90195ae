using System.Text.RegularExpressions;

namespace K2RL.Model.Tokenization;

/// <summary>
/// The split applied before BPE: text is cut into pieces (words with their leading space or punctuation
/// mark, runs of up to three digits, punctuation runs, whitespace runs, runs of Han characters), and merges
/// never cross a piece boundary. The pattern follows the GPT-4o/Kimi family but is our own; .NET regex has
/// no script classes, so Han is the CJK ideograph blocks. <see cref="SplitDigitsPattern"/> is the same split
/// with every digit a piece of its own (as LLaMA's tokenizer does), so BPE never merges digits: a number is
/// one token per digit, which is what column arithmetic over digits needs in a small model.
/// </summary>
public static class PreTokenizer
{
    private const string Han = @"\p{IsCJKUnifiedIdeographs}\p{IsCJKUnifiedIdeographsExtensionA}\p{IsCJKCompatibilityIdeographs}";
    private const string Upper = @"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}-[" + Han + "]]";
    private const string Lower = @"[\p{Ll}\p{Lm}\p{Lo}\p{M}-[" + Han + "]]";
    private const string Contraction = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)?";

    /// <summary>The default pattern; a tokenizer records the one it was trained with in its config.</summary>
    public const string DefaultPattern = Words + @"|\p{N}{1,3}" + Rest;

    /// <summary>
    /// <see cref="DefaultPattern"/> with each digit (any \p{N} char) a piece of its own. No other alternative can
    /// take a digit, so an ASCII digit is always a one-byte piece and no merge ever contains one.
    /// </summary>
    public const string SplitDigitsPattern = Words + @"|\p{N}" + Rest;

    private const string Words =
        "[" + Han + "]+"
        + @"|[^\r\n\p{L}\p{N}]?" + Upper + "*" + Lower + "+" + Contraction
        + @"|[^\r\n\p{L}\p{N}]?" + Upper + "+" + Lower + "*" + Contraction;

    private const string Rest =
        @"| ?[^\s\p{L}\p{N}]+[\r\n]*"
        + @"|\s*[\r\n]+"
        + @"|\s+(?!\S)"
        + @"|\s+";

    /// <summary>The pattern for a tokenizer that does or does not split digits.</summary>
    public static string Pattern(bool splitDigits) => splitDigits ? SplitDigitsPattern : DefaultPattern;

    /// <summary>
    /// The longest one match may search: K2RL's patterns take microseconds per match, so a match that runs this long is
    /// a pattern that backtracks catastrophically (e.g. a nested quantifier from a hostile tokenizer file).
    /// </summary>
    public static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(2);

    internal static Regex Compile(string pattern) =>
        new(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant, MatchTimeout);

    /// <summary>
    /// Runs <paramref name="pattern"/> over probe texts (long runs of each character class its alternatives look at,
    /// ending in a character that makes a greedy alternative fail) with a short timeout: null when it splits them all
    /// in time, else the probe it stalled on. A backtracking pattern is caught here, when its file is loaded, not on
    /// the first unlucky prompt.
    /// </summary>
    public static string? FindCatastrophicBacktracking(string pattern)
    {
        var regex = new Regex(pattern, RegexOptions.CultureInvariant, TimeSpan.FromMilliseconds(250));
        string[] runs = ["a", "A", "aA", "1", " ", "\n", " a", "!", "a1", "\t", "é", "中", "'", "a'"];
        string[] ends = ["", "!", "\u0000", "1", " "];
        foreach (string run in runs)
        {
            string body = string.Concat(Enumerable.Repeat(run, 4096 / run.Length));
            foreach (string end in ends)
            {
                try
                {
                    foreach (ValueMatch _ in regex.EnumerateMatches(body + end))
                    {
                    }
                }
                catch (RegexMatchTimeoutException)
                {
                    return $"{body.Length + end.Length} chars of \"{Escape(run)}\" followed by \"{Escape(end)}\"";
                }
            }
        }

        return null;
    }

    private static string Escape(string s) => s.Replace("\n", "\\n").Replace("\t", "\\t").Replace("\u0000", "\\0");
}

/// <summary>
/// Walks the pieces of a text as char ranges. Every char lands in exactly one piece (text the pattern does not
/// match becomes a piece of its own) and a piece boundary never falls inside a surrogate pair, so encoding the
/// pieces to UTF-8 one by one gives exactly the UTF-8 of the whole text.
/// </summary>
internal ref struct PieceEnumerator
{
    private readonly ReadOnlySpan<char> text;
    private Regex.ValueMatchEnumerator matches;
    private int pos;
    private bool hasMatch;
    private int matchStart;
    private int matchEnd;

    public PieceEnumerator(Regex regex, ReadOnlySpan<char> text)
    {
        this.text = text;
        matches = regex.EnumerateMatches(text);
    }

    /// <summary>Start (in chars) of the current piece.</summary>
    public int Start { get; private set; }

    /// <summary>Length (in chars) of the current piece.</summary>
    public int Length { get; private set; }

    public bool MoveNext()
    {
        while (true)
        {
            if (!hasMatch)
            {
                if (!matches.MoveNext())
                {
                    return Emit(text.Length);
                }

                var m = matches.Current;
                (matchStart, matchEnd, hasMatch) = (m.Index, m.Index + m.Length, true);
            }

            if (matchStart > pos)
            {
                return Emit(AfterPair(matchStart)); // a gap the pattern did not match
            }

            hasMatch = false;
            if (Emit(AfterPair(matchEnd)))
            {
                return true;
            }
        }
    }

    private bool Emit(int end)
    {
        if (end <= pos)
        {
            return false;
        }

        (Start, Length, pos) = (pos, end - pos, end);
        return true;
    }

    /// <summary>Moves a boundary that would split a surrogate pair to after the pair.</summary>
    private readonly int AfterPair(int boundary) =>
        boundary > 0 && boundary < text.Length && char.IsHighSurrogate(text[boundary - 1]) && char.IsLowSurrogate(text[boundary])
            ? boundary + 1
            : boundary;
}
