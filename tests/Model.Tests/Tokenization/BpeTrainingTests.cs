using System.Text;
using K2RL.Model.Tokenization;

namespace K2RL.Model.Tests.Tokenization;

public class BpeTrainingTests
{
    [Fact]
    public void TrainingIsDeterministic()
    {
        string corpus = TokenizerTestData.Corpus(3, 20_000);
        string other = TokenizerTestData.Corpus(4, 20_000);
        var a = BpeTokenizer.Train([corpus, other], 700);
        var b = BpeTokenizer.Train([corpus, other], 700);
        var c = BpeTokenizer.Train([other, corpus], 700); // document order does not matter
        Assert.Equal(700, a.VocabSize);
        Assert.Equal(RankBytes(a), RankBytes(b));
        Assert.Equal(RankBytes(a), RankBytes(c));
        Assert.NotEqual(RankBytes(a), RankBytes(BpeTokenizer.Train([corpus], 700)));
    }

    [Fact]
    public void ReachesTheTargetVocabularyWithSpecialsAfterTheRanks()
    {
        var tokenizer = BpeRoundTripTests.Trained.Value;
        Assert.Equal(1024, tokenizer.VocabSize);
        Assert.Equal(1024 - SpecialTokens.All.Count, tokenizer.RankCount);
        for (int i = 0; i < SpecialTokens.All.Count; i++)
        {
            Assert.Equal(tokenizer.RankCount + i, tokenizer.SpecialTokenId(SpecialTokens.All[i]));
        }

        // Ranks 0..255 are the bytes; every later rank is two earlier tokens joined.
        for (int b = 0; b < 256; b++)
        {
            Assert.Equal([(byte)b], tokenizer.TokenBytes(b).ToArray());
        }

        var seen = new HashSet<string>();
        for (int id = 0; id < tokenizer.RankCount; id++)
        {
            Assert.True(seen.Add(Convert.ToHexString(tokenizer.TokenBytes(id))), $"rank {id} repeats a token");
        }
    }

    [Fact]
    public void TrainedTokenizerCompressesHeldOutTextBetterThanBytes()
    {
        var tokenizer = BpeRoundTripTests.Trained.Value;
        string heldOut = TokenizerTestData.Corpus(99, 5_000); // same language, different sentences
        int bytes = Encoding.UTF8.GetByteCount(heldOut);
        int tokens = tokenizer.Encode(heldOut).Length;
        Assert.True(tokens * 3 < bytes, $"{tokens} tokens for {bytes} bytes: expected better than 3 bytes per token");
        Assert.Equal(bytes, BpeTokenizer.ByteLevel().Encode(heldOut).Length);
    }

    [Fact]
    public void TiesGoToTheSmallerLeftIdThenTheSmallerRightId()
    {
        // Pieces "ab", " cd", " ce": (' ', c) is seen twice and wins. Then (a, b), (" c", d), (" c", e) tie at one
        // each: 'a' (97) is the smallest left id, then d before e on the right.
        var tokenizer = BpeTokenizer.Train(["ab cd ce"], 256 + 3 + SpecialTokens.All.Count);
        Assert.Equal(" c", Encoding.UTF8.GetString(tokenizer.TokenBytes(256)));
        Assert.Equal("ab", Encoding.UTF8.GetString(tokenizer.TokenBytes(257)));
        Assert.Equal(" cd", Encoding.UTF8.GetString(tokenizer.TokenBytes(258)));
    }

    [Fact]
    public void FrequentWordsBecomeSingleTokens()
    {
        var tokenizer = BpeTokenizer.Train([string.Concat(Enumerable.Repeat("hello world, hello there. ", 200))], 300);
        Assert.Single(tokenizer.Encode("hello"));
        Assert.Single(tokenizer.Encode(" hello"));
        Assert.Equal(2, tokenizer.Encode("hello world").Length);
    }

    [Fact]
    public void StopsEarlyWhenNoPairsAreLeft()
    {
        var tokenizer = BpeTokenizer.Train(["abc abc"], 1000);
        Assert.True(tokenizer.RankCount < 1000 - SpecialTokens.All.Count);
        Assert.Equal(tokenizer.RankCount + SpecialTokens.All.Count, tokenizer.VocabSize);
        Assert.Single(tokenizer.Encode(" abc"));
    }

    [Fact]
    public void RejectsAVocabularyTooSmallForBytesAndSpecials()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => BpeTokenizer.Train(["x"], 266));
        Assert.Contains("267", e.Message);
        Assert.Equal(256 + 1, BpeTokenizer.Train(["x"], 257, specialTokens: ["<|eos|>"]).VocabSize);
    }

    [Fact]
    public void MergesNeverCrossPieceBoundaries()
    {
        var tokenizer = BpeRoundTripTests.Trained.Value;
        for (int id = 0; id < tokenizer.RankCount; id++)
        {
            string token = Encoding.UTF8.GetString(tokenizer.TokenBytes(id));
            // A token holds no letter after a space except at its start, and no newline before a letter.
            int space = token.IndexOf(' ', 1);
            Assert.False(space > 0 && space + 1 < token.Length && char.IsLetter(token[space + 1]), $"token '{token}' spans two words");
        }
    }

    private static string[] RankBytes(BpeTokenizer tokenizer) =>
        Enumerable.Range(0, tokenizer.RankCount).Select(id => Convert.ToHexString(tokenizer.TokenBytes(id))).ToArray();
}
