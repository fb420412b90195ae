using System.Text;
using K2RL.Common;
using K2RL.Common.Chat;
using K2RL.Model.Tokenization;

namespace K2RL.Model.Tests.Tokenization;

public class TokenizerStorageTests
{
    [Fact]
    public void SaveThenLoadEncodesIdentically()
    {
        using var dir = new TempDirectory();
        var trained = BpeRoundTripTests.Trained.Value;
        trained.Save(dir.Path);
        var loaded = BpeTokenizer.Load(dir.Path);
        Assert.Equal(trained.VocabSize, loaded.VocabSize);
        Assert.Equal(trained.RankCount, loaded.RankCount);
        Assert.Equal(trained.SpecialTokenIds.OrderBy(p => p.Value), loaded.SpecialTokenIds.OrderBy(p => p.Value));
        string text = TokenizerTestData.Corpus(5, 3000) + ChatTokens.ImEnd + TokenizerTestData.RandomText(new Random(5), 500);
        Assert.Equal(trained.Encode(text), loaded.Encode(text));

        // Saving the loaded one gives the same files byte for byte.
        using var again = new TempDirectory();
        loaded.Save(again.Path);
        foreach (var name in new[] { BpeTokenizer.RankFileName, BpeTokenizer.ConfigFileName })
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(dir.Path, name)), File.ReadAllBytes(Path.Combine(again.Path, name)));
        }
    }

    [Fact]
    public void RankFileIsBase64SpaceRankPerLine()
    {
        using var dir = new TempDirectory();
        BpeTokenizer.ByteLevel().Save(dir.Path);
        var lines = File.ReadAllLines(Path.Combine(dir.Path, BpeTokenizer.RankFileName));
        Assert.Equal(256, lines.Length);
        Assert.Equal("AA== 0", lines[0]);
        Assert.Equal("QQ== 65", lines[65]);
        string config = File.ReadAllText(Path.Combine(dir.Path, BpeTokenizer.ConfigFileName));
        Assert.Contains("\"<|im_system|>\": 256", config);
        Assert.Contains("\"<|endoftext|>\": 266", config);
    }

    [Fact]
    public void LoadsAHandWrittenRankFileAndMergesLowestRankFirst()
    {
        using var dir = new TempDirectory();
        // Bytes in a shuffled order (ranks need not equal byte values), then "bc", "ab", "cab".
        var rng = new Random(3);
        var order = Enumerable.Range(0, 256).OrderBy(_ => rng.Next()).ToList();
        var text = new StringBuilder();
        int rank = 0;
        foreach (int b in order)
        {
            text.Append($"{Convert.ToBase64String([(byte)b])} {rank++}\n");
        }

        foreach (var token in new[] { "bc", "ab", "cab" })
        {
            text.Append($"{Convert.ToBase64String(Encoding.ASCII.GetBytes(token))} {rank++}\r\n");
        }

        string rankFile = dir.File("my.tiktoken", text.ToString() + "\n");
        var tokenizer = BpeTokenizer.LoadFiles(rankFile, null);
        Assert.Equal(259, tokenizer.RankCount);
        Assert.Equal(259 + SpecialTokens.All.Count, tokenizer.VocabSize);
        int a = order.IndexOf('a'), c = order.IndexOf('c'), x = order.IndexOf('x'), bc = 256, ab = 257, cab = 258;
        Assert.Equal([a, bc], tokenizer.Encode("abc"));           // "bc" has the lower rank, though "ab" is leftmost
        Assert.Equal([ab, ab], tokenizer.Encode("abab"));
        Assert.Equal([a, bc, a, bc], tokenizer.Encode("abcabc")); // equal ranks: leftmost first
        Assert.Equal([x, cab, x], tokenizer.Encode("xcabx"));     // ab, then c + ab
        Assert.Equal([c, bc], tokenizer.Encode("cbc"));
        Assert.Equal([cab], tokenizer.Encode("cab"));
        Assert.Equal(tokenizer.SpecialTokenId(ChatTokens.ImEnd), tokenizer.Encode(ChatTokens.ImEnd).Single());
        Assert.Equal("xcabxabc", tokenizer.Decode(tokenizer.Encode("xcabxabc")));
    }

    [Fact]
    public void LoadsHuggingFaceAddedTokensDecoder()
    {
        using var dir = new TempDirectory();
        BpeTokenizer.ByteLevel().Save(dir.Path);
        string config = dir.File("hf.json",
            """{"added_tokens_decoder": {"256": {"content": "[BOS]", "special": true}, "258": {"content": "<|im_end|>", "special": true}}}""");
        var tokenizer = BpeTokenizer.LoadFiles(Path.Combine(dir.Path, BpeTokenizer.RankFileName), config);
        Assert.Equal(259, tokenizer.VocabSize);
        Assert.Equal([258], tokenizer.Encode("<|im_end|>"));
        Assert.False(tokenizer.IsSpecial(257));
        Assert.Contains("257", Assert.Throws<ArgumentException>(() => tokenizer.Decode([257])).Message);
    }

    public static TheoryData<string, string, string> CorruptRankFiles => new()
    {
        { "bad base64", "AA== 0\n!!!! 1\n", "line 2" },
        { "missing rank", "AA== 0\nAQ==\n", "line 2" },
        { "rank not a number", "AA== 0\nAQ== one\n", "line 2" },
        { "negative rank", "AA== 0\nAQ== -1\n", "line 2" },
        { "duplicate token", "AA== 0\nAQ== 1\nAA== 2\n", "line 3" },
        { "duplicate rank", "AA== 0\nAQ== 1\nAg== 1\n", "line 3" },
        { "gap", "AA== 0\nAQ== 1\nAg== 3\n", "line 3" },
        { "not starting at 0", "AA== 5\n", "line 1" },
        { "empty token", " 0\n", "line 1" },
        { "extra field", "AA== 0 x\n", "line 1" },
    };

    [Theory]
    [MemberData(nameof(CorruptRankFiles))]
    public void CorruptRankFilesNameTheFileAndLine(string what, string contents, string line)
    {
        using var dir = new TempDirectory();
        string path = dir.File("bad.tiktoken", contents);
        var e = Assert.Throws<CorruptFileException>(() => BpeTokenizer.LoadFiles(path, null));
        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
        Assert.Contains(line + ":", e.Message);
        Assert.False(string.IsNullOrEmpty(what));
    }

    [Fact]
    public void RankFileWithoutEverySingleByteIsRejected()
    {
        using var dir = new TempDirectory();
        var text = new StringBuilder();
        for (int b = 0; b < 255; b++)
        {
            text.Append($"{Convert.ToBase64String([(byte)b])} {b}\n");
        }

        var e = Assert.Throws<CorruptFileException>(() => BpeTokenizer.LoadFiles(dir.File("short.tiktoken", text.ToString()), null));
        Assert.Contains("0xFF", e.Message);
        Assert.Contains("no tokens", Assert.Throws<CorruptFileException>(() => BpeTokenizer.LoadFiles(dir.File("empty.tiktoken", "\n"), null)).Message);
    }

    public static TheoryData<string, string> CorruptConfigs => new()
    {
        { """{"special_tokens": {"<|a|>": 12}}""", "'<|a|>' has id 12" },
        { """{"special_tokens": {"<|a|>": 300, "<|b|>": 300}}""", "share id 300" },
        { """{"special_tokens": {"<|a|>": "x"}}""", "special_tokens.<|a|>" },
        { """{"special_tokens": {"<|a|>": 300}, "num_base_tokens": 100}""", "num_base_tokens" },
        { """{"special_tokens": {}, "pattern": "(unclosed"}""", "pattern" },
        { """{"special_tokens": {}, "pattern": "(a+)+$"}""", "backtracks catastrophically" },
        { """{"special_tokens": {}, "pattern": "(\\s*)*x"}""", "backtracks catastrophically" },
        { """{"special_tokens": {}, "pattern": "((a|aa)+)+b"}""", "backtracks catastrophically" },
        { """{"special_tokens": {"<|a|>": 300}, "special_tokens": {}}""", "Duplicate" },
        { """{"special_tokens": {"<|a|>": 2147483647}}""", "past the 256 ranks" },
        { """{"nothing": 1}""", "special_tokens" },
        { "{\n\"special_tokens\": {\n\"<|a|>\" 300}}", "line 3" },
        { """{"added_tokens_decoder": {"x": {"content": "[BOS]"}}}""", "added_tokens_decoder.x" },
    };

    [Theory]
    [MemberData(nameof(CorruptConfigs))]
    public void CorruptConfigsNameTheFileAndWhat(string json, string expected)
    {
        using var dir = new TempDirectory();
        BpeTokenizer.ByteLevel().Save(dir.Path);
        string config = dir.File(BpeTokenizer.ConfigFileName, json);
        var e = Assert.Throws<CorruptFileException>(() => BpeTokenizer.Load(dir.Path));
        Assert.Equal(config, e.Path);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void MissingFilesSayWhatIsMissing()
    {
        using var dir = new TempDirectory();
        Assert.Contains(BpeTokenizer.ConfigFileName, Assert.ThrowsAny<K2Exception>(() => BpeTokenizer.Load(dir.Path)).Message);
        Assert.Contains("nope.tiktoken", Assert.ThrowsAny<K2Exception>(() => BpeTokenizer.LoadFiles(Path.Combine(dir.Path, "nope.tiktoken"), null)).Message);
    }

    /// <summary>The probe finds nothing wrong with the patterns K2RL ships, nor with the GPT-style ones users bring.</summary>
    [Theory]
    [InlineData(K2RL.Model.Tokenization.PreTokenizer.DefaultPattern)]
    [InlineData(K2RL.Model.Tokenization.PreTokenizer.SplitDigitsPattern)]
    [InlineData(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")]
    public void WellBehavedPatternsPassTheBacktrackingProbe(string pattern) =>
        Assert.Null(K2RL.Model.Tokenization.PreTokenizer.FindCatastrophicBacktracking(pattern));
}
