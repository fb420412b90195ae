using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using K2RL.Model.Tokenization;
using Xunit.Abstractions;
using MlRegexPreTokenizer = Microsoft.ML.Tokenizers.RegexPreTokenizer;
using MlTiktokenTokenizer = Microsoft.ML.Tokenizers.TiktokenTokenizer;

namespace K2RL.Model.Tests.Tokenization;

/// <summary>
/// K2RL's tiktoken-format rank files read by another implementation: Microsoft.ML.Tokenizers' TiktokenTokenizer loads
/// the saved tiktoken.model with the same pattern and specials and encodes a varied corpus (words, Unicode of every
/// UTF-8 length, emoji, digits, special tokens, chat text) to exactly K2RL's ids, and decodes them back to the text.
/// </summary>
public sealed class TiktokenInteropTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MicrosoftMLTokenizersEncodesTheSameIdsFromK2RLsRankFile(bool splitDigits)
    {
        using var dir = new TempDirectory();
        var k2 = BpeTokenizer.Train([TokenizerTestData.Corpus(1, 20_000), Mixed(new Random(1))], 900,
            pattern: PreTokenizer.Pattern(splitDigits));
        k2.Save(dir.Path);
        var ml = Load(dir.Path, k2);

        int texts = 0, tokens = 0;
        foreach (string text in Texts())
        {
            var ids = k2.Encode(text);
            var theirs = ml.EncodeToIds(text);
            Assert.True(ids.SequenceEqual(theirs), $"ids differ on {Show(text)}: K2RL [{string.Join(",", ids)}], ML.Tokenizers [{string.Join(",", theirs)}]");
            Assert.Equal(text, ml.Decode(ids));
            texts++;
            tokens += ids.Length;
        }

        output.WriteLine($"split digits {splitDigits}: {texts} texts, {tokens:N0} tokens, identical ids ({k2.RankCount} ranks, {k2.SpecialTokenIds.Count} specials)");
    }

    /// <summary>Both encoders over the same file and text, timed after a warm-up (recorded in docs/BENCHMARKS.md).</summary>
    [Fact]
    public void EncodeThroughputOfBothOnTheSameFile()
    {
        using var dir = new TempDirectory();
        var k2 = BpeTokenizer.Train([TokenizerTestData.Corpus(1, 20_000)], 900);
        k2.Save(dir.Path);
        var ml = Load(dir.Path, k2);
        string text = TokenizerTestData.Corpus(2, 200_000) + Mixed(new Random(2));
        double mb = Encoding.UTF8.GetByteCount(text) / 1e6;
        double Time(Func<int> encode)
        {
            encode();
            var best = double.MaxValue;
            for (int i = 0; i < 3; i++)
            {
                var sw = Stopwatch.StartNew();
                encode();
                best = Math.Min(best, sw.Elapsed.TotalSeconds);
            }

            return best;
        }

        double ours = Time(() => k2.Encode(text).Length), theirs = Time(() => ml.EncodeToIds(text).Count);
        Assert.Equal(k2.Encode(text), ml.EncodeToIds(text));
        output.WriteLine($"{mb:F2} MB: K2RL {mb / ours:F1} MB/s, Microsoft.ML.Tokenizers {mb / theirs:F1} MB/s (best of 3, one thread)");
    }

    private static MlTiktokenTokenizer Load(string dir, BpeTokenizer k2)
    {
        var specials = k2.SpecialTokenIds.ToDictionary(p => p.Key, p => p.Value);
        var split = new MlRegexPreTokenizer(new Regex(k2.Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant), specials);
        return MlTiktokenTokenizer.Create(Path.Combine(dir, BpeTokenizer.RankFileName), split, normalizer: null, specialTokens: specials);
    }

    private static IEnumerable<string> Texts()
    {
        yield return "";
        yield return TokenizerTestData.Corpus(7, 3_000);
        yield return "Digits: 0 7 42 123 4567 89012 3.14159 -2,500,000 1e-9 2025-07-31 ٣٤٥ ⅔ ①②";
        yield return "<|im_start|>user\nWhat is 12 + 34?<|im_end|>\n<|im_start|>assistant\n46<|im_end|><|endoftext|>";
        yield return "specials glued:<|im_end|><|im_start|>and<|endoftext|>broken <|im_en d|> <|>";
        yield return "Größe, naïve café, 中文分词测试, русский текст, ελληνικά, עברית, 日本語のテキスト, 한국어 🙂🚀👩‍💻 e\u0301";
        yield return "  leading and trailing spaces  \n\n\ttabs\r\nCRLF\n   \n";
        yield return "code: for (int i = 0; i < n; i++) { x[i] += y[i] * 2; } // done\n";
        var rng = new Random(11);
        for (int i = 0; i < 40; i++)
        {
            yield return Mixed(rng);
        }
    }

    /// <summary>Random code points of every UTF-8 length, numbers and special tokens.</summary>
    private static string Mixed(Random rng)
    {
        var text = new StringBuilder();
        for (int i = 0; i < 30; i++)
        {
            text.Append(rng.Next(5) switch
            {
                0 => rng.Next(100_000).ToString(System.Globalization.CultureInfo.InvariantCulture),
                1 => SpecialTokens.All[rng.Next(SpecialTokens.All.Count)],
                _ => TokenizerTestData.RandomText(rng, 1 + rng.Next(12)),
            });
        }

        return text.ToString();
    }

    private static string Show(string text) => text.Length <= 80 ? $"\"{text}\"" : $"\"{text[..80]}…\" ({text.Length} chars)";
}
