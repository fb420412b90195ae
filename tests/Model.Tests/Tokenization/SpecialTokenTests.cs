using K2RL.Common.Chat;
using K2RL.Model.Tokenization;

namespace K2RL.Model.Tests.Tokenization;

public class SpecialTokenTests
{
    [Fact]
    public void TheElevenSpecialsAreDistinctAndInIdOrder()
    {
        Assert.Equal(11, SpecialTokens.All.Count);
        Assert.Equal(SpecialTokens.All.Count, SpecialTokens.All.Distinct().Count());
        Assert.Equal(ChatTokens.ImSystem, SpecialTokens.All[0]);
        Assert.Equal(ChatTokens.ToolCallsSectionEnd, SpecialTokens.All[9]);
        Assert.Equal(SpecialTokens.EndOfText, SpecialTokens.All[10]);
    }

    [Fact]
    public void EachSpecialEncodesToOneIdEvenInsideText()
    {
        var tokenizer = BpeRoundTripTests.Trained.Value;
        foreach (string special in SpecialTokens.All)
        {
            int id = tokenizer.SpecialTokenId(special);
            Assert.True(tokenizer.IsSpecial(id));
            Assert.Equal([id], tokenizer.Encode(special));
            var ids = tokenizer.Encode("ka" + special + "mi" + special);
            Assert.Equal(2, ids.Count(i => i == id));
            Assert.Equal("ka" + special + "mi" + special, tokenizer.Decode(ids));
        }
    }

    [Fact]
    public void AdjacentSpecialsAndPartialSpecialsAreNotConfused()
    {
        var tokenizer = BpeTokenizer.ByteLevel();
        int end = tokenizer.SpecialTokenId(ChatTokens.ImEnd);
        int user = tokenizer.SpecialTokenId(ChatTokens.ImUser);
        Assert.Equal([end, user], tokenizer.Encode("<|im_end|><|im_user|>"));
        var ids = tokenizer.Encode("<|im_end|<|im_end|>");
        Assert.Equal(end, ids[^1]);
        Assert.Equal("<|im_end|".Length + 1, ids.Length);
    }

    [Fact]
    public void WithoutAllowSpecialTheTextIsOrdinary()
    {
        var tokenizer = BpeRoundTripTests.Trained.Value;
        var ids = tokenizer.Encode("say <|im_end|> now", allowSpecial: false);
        Assert.DoesNotContain(ids, tokenizer.IsSpecial);
        Assert.Equal("say <|im_end|> now", tokenizer.Decode(ids));
    }

    [Fact]
    public void UnknownSpecialThrowsNamingTheToken()
    {
        var e = Assert.Throws<KeyNotFoundException>(() => BpeTokenizer.ByteLevel().SpecialTokenId("<|nope|>"));
        Assert.Contains("<|nope|>", e.Message);
    }

    [Fact]
    public void RanksAreNotSpecial()
    {
        var tokenizer = BpeRoundTripTests.Trained.Value;
        Assert.False(tokenizer.IsSpecial(0));
        Assert.False(tokenizer.IsSpecial(tokenizer.RankCount - 1));
        Assert.True(tokenizer.IsSpecial(tokenizer.RankCount));
        Assert.False(tokenizer.IsSpecial(tokenizer.VocabSize));
        Assert.False(tokenizer.IsSpecial(-1));
    }
}
