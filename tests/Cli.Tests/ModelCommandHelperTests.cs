using K2RL.Cli.Commands;
using K2RL.Common;
using K2RL.Model.Tokenization;

namespace K2RL.Cli.Tests;

public class ModelCommandHelperTests
{
    [Fact]
    public void IdsParseAndStayInsideTheVocabulary()
    {
        Assert.Equal(new[] { 1, 2, 511 }, ModelCommands.ParseIds("1, 2,511", 512));
        Assert.Contains("token id 512", Assert.Throws<K2Exception>(() => ModelCommands.ParseIds("1,512,3", 512)).Message);
        Assert.Contains("token id -1", Assert.Throws<K2Exception>(() => ModelCommands.ParseIds("-1", 512)).Message);
        Assert.Contains("'x'", Assert.Throws<K2Exception>(() => ModelCommands.ParseIds("1,x", 512)).Message);
        Assert.Contains("''", Assert.Throws<K2Exception>(() => ModelCommands.ParseIds("", 512)).Message);
    }

    [Fact]
    public void TokenizerResolvesFromADirectoryARankFileOrTheDefault()
    {
        var (byteLevel, description) = ModelCommands.ResolveTokenizer(null);
        Assert.Equal(256 + SpecialTokens.All.Count, byteLevel.VocabSize);
        Assert.Contains("byte-level", description);

        string dir = Path.Combine(Path.GetTempPath(), $"k2rl-tok-{Guid.NewGuid():N}");
        try
        {
            BpeTokenizer.ByteLevel().Save(dir);
            Assert.Equal(byteLevel.VocabSize, ModelCommands.ResolveTokenizer(dir).Tokenizer.VocabSize);
            var fromFile = ModelCommands.ResolveTokenizer(Path.Combine(dir, BpeTokenizer.RankFileName)).Tokenizer;
            Assert.Equal(byteLevel.Encode("<|im_end|>x"), fromFile.Encode("<|im_end|>x"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }

        Assert.Contains("no such tokenizer", Assert.Throws<K2Exception>(() => ModelCommands.ResolveTokenizer(dir)).Message);
    }
}
