using System.Text;
using K2RL.Common;
using K2RL.Common.Chat;
using K2RL.Model.Tokenization;

namespace K2RL.Model.Tests.Tokenization;

public class DigitSplitTests
{
    private const string Han = @"\p{IsCJKUnifiedIdeographs}\p{IsCJKUnifiedIdeographsExtensionA}\p{IsCJKCompatibilityIdeographs}";

    /// <summary>The pattern as it was written before digit splitting existed: saved tokenizers carry this string.</summary>
    private const string PatternBeforeDigitSplit =
        "[" + Han + "]+"
        + @"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}-[" + Han + @"]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}-[" + Han + @"]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
        + @"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}-[" + Han + @"]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}-[" + Han + @"]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
        + @"|\p{N}{1,3}"
        + @"| ?[^\s\p{L}\p{N}]+[\r\n]*"
        + @"|\s*[\r\n]+"
        + @"|\s+(?!\S)"
        + @"|\s+";

    private static readonly Lazy<BpeTokenizer> Split = new(() => BpeTokenizer.Train(Corpus(), 600, pattern: PreTokenizer.SplitDigitsPattern));

    private static readonly Lazy<BpeTokenizer> Grouped = new(() => BpeTokenizer.Train(Corpus(), 600));

    /// <summary>Arithmetic-like text, so without the split BPE would learn many digit merges.</summary>
    private static IEnumerable<string> Corpus()
    {
        var rng = new Random(3);
        for (int d = 0; d < 400; d++)
        {
            long a = rng.NextInt64(10, 100_000), b = rng.NextInt64(10, 100_000);
            yield return $"What is {a} + {b}?\nAdd {a} and {b}: {a % 10} + {b % 10} = {a % 10 + b % 10}\nAnswer: {a + b}\n"
                + TokenizerTestData.Corpus(d, 40);
        }
    }

    [Fact]
    public void DefaultPatternIsUnchanged()
    {
        Assert.Equal(PatternBeforeDigitSplit, PreTokenizer.DefaultPattern);
        Assert.Equal(PreTokenizer.DefaultPattern, PreTokenizer.Pattern(splitDigits: false));
        Assert.Equal(PreTokenizer.SplitDigitsPattern, PreTokenizer.Pattern(splitDigits: true));
    }

    [Fact]
    public void NoTokenHoldsADigitWithAnythingElse()
    {
        var tok = Split.Value;
        Assert.True(tok.SplitsDigits);
        Assert.Equal(600, tok.VocabSize);
        for (int id = 0; id < tok.RankCount; id++)
        {
            var bytes = tok.TokenBytes(id);
            if (bytes.Length > 1)
            {
                Assert.False(bytes.ContainsAnyInRange((byte)'0', (byte)'9'), $"token {id} '{Encoding.UTF8.GetString(bytes)}' merges a digit");
            }
        }

        // The grouped tokenizer, trained on the same corpus, does learn digit merges: the corpus would produce them.
        Assert.Contains(Enumerable.Range(0, Grouped.Value.RankCount),
            id => Grouped.Value.TokenBytes(id) is { Length: > 1 } b && b.ContainsAnyInRange((byte)'0', (byte)'9'));
    }

    [Theory]
    [InlineData("What is 89 + 44?\nAnswer: 133")]
    [InlineData("x=1234567890, y=-0.5e10, 007")]
    [InlineData("٣٤٥ and ① and １２")]
    public void EveryDigitIsOneTokenAndTextRoundTrips(string text)
    {
        var tok = Split.Value;
        var ids = tok.Encode(text);
        Assert.Equal(text, tok.Decode(ids));
        int digits = text.Count(char.IsAsciiDigit);
        int digitTokens = ids.Count(id => tok.TokenBytes(id) is [>= (byte)'0' and <= (byte)'9']);
        Assert.Equal(digits, digitTokens);
    }

    [Fact]
    public void NumbersEncodeDigitByDigit()
    {
        var tok = Split.Value;
        var ids = tok.Encode("12345");
        Assert.Equal(["1", "2", "3", "4", "5"], ids.Select(id => tok.Decode([id])));
        Assert.True(Grouped.Value.Encode("12345").Length < 5); // the old split groups up to three digits
    }

    [Fact]
    public void SaveThenLoadKeepsTheSplit()
    {
        using var dir = new TempDirectory();
        Split.Value.Save(dir.Path);
        Assert.Contains("\"split_digits\": true", File.ReadAllText(Path.Combine(dir.Path, BpeTokenizer.ConfigFileName)));
        var loaded = BpeTokenizer.Load(dir.Path);
        Assert.True(loaded.SplitsDigits);
        string text = string.Concat(Corpus().Take(20)) + ChatTokens.ImEnd + "98765 - 4321 = 94444";
        Assert.Equal(Split.Value.Encode(text), loaded.Encode(text));
        Assert.Equal(text, loaded.Decode(loaded.Encode(text)));
    }

    [Fact]
    public void AFileWrittenBeforeTheOptionLoadsAsBefore()
    {
        // A config as Save wrote it before split_digits existed: the pattern string, no split_digits key.
        using var dir = new TempDirectory();
        var old = Grouped.Value;
        old.Save(dir.Path);
        string config = Path.Combine(dir.Path, BpeTokenizer.ConfigFileName);
        string[] lines = File.ReadAllLines(config);
        File.WriteAllLines(config, lines.Where(l => !l.Contains("split_digits", StringComparison.Ordinal)));
        Assert.DoesNotContain("split_digits", File.ReadAllText(config));
        var loaded = BpeTokenizer.Load(dir.Path);
        Assert.False(loaded.SplitsDigits);
        Assert.Equal(PatternBeforeDigitSplit, loaded.Pattern);
        string text = string.Concat(Corpus().Skip(50).Take(20)) + "12345";
        Assert.Equal(old.Encode(text), loaded.Encode(text));
    }

    [Fact]
    public void SplitDigitsThatContradictsThePatternIsRefused()
    {
        using var dir = new TempDirectory();
        Grouped.Value.Save(dir.Path);
        string config = Path.Combine(dir.Path, BpeTokenizer.ConfigFileName);
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"split_digits\": false", "\"split_digits\": true"));
        var e = Assert.Throws<CorruptFileException>(() => BpeTokenizer.Load(dir.Path));
        Assert.Contains("split_digits", e.Message);
    }

    [Fact]
    public void SplitDigitsWithoutAPatternMeansTheSplitPattern()
    {
        using var dir = new TempDirectory();
        Split.Value.Save(dir.Path);
        string config = Path.Combine(dir.Path, BpeTokenizer.ConfigFileName);
        File.WriteAllLines(config, File.ReadAllLines(config).Where(l => !l.TrimStart().StartsWith("\"pattern\"", StringComparison.Ordinal)));
        var loaded = BpeTokenizer.Load(dir.Path);
        Assert.True(loaded.SplitsDigits);
        Assert.Equal(Split.Value.Encode("31 * 7 = 217"), loaded.Encode("31 * 7 = 217"));
    }
}
