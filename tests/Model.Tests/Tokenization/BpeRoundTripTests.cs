using System.Text;
using K2RL.Common.Chat;
using K2RL.Model.Tokenization;

namespace K2RL.Model.Tests.Tokenization;

public class BpeRoundTripTests
{
    /// <summary>Trained once for the tests that need merges (deterministic, well under a second).</summary>
    internal static readonly Lazy<BpeTokenizer> Trained = new(() => BpeTokenizer.Train([TokenizerTestData.Corpus(1, 60_000)], 1024));

    public static TheoryData<string> Tokenizers => new() { "bytes", "trained" };

    private static BpeTokenizer Get(string which) => which == "bytes" ? BpeTokenizer.ByteLevel() : Trained.Value;

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void RandomBytesRoundTripExactly(string which)
    {
        var tokenizer = Get(which);
        var rng = new Random(7);
        for (int trial = 0; trial < 200; trial++)
        {
            var bytes = TokenizerTestData.RandomBytes(rng, rng.Next(0, 600));
            var ids = tokenizer.EncodeBytes(bytes);
            Assert.All(ids, id => Assert.False(tokenizer.IsSpecial(id)));
            Assert.Equal(bytes, tokenizer.DecodeBytes(ids));
        }
    }

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void Utf8WithInvalidSequencesRoundTripsExactly(string which)
    {
        var tokenizer = Get(which);
        var rng = new Random(11);
        for (int trial = 0; trial < 200; trial++)
        {
            var bytes = TokenizerTestData.Utf8WithInvalid(rng, rng.Next(1, 40));
            Assert.Equal(bytes, tokenizer.DecodeBytes(tokenizer.EncodeBytes(bytes)));
        }
    }

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void RandomTextRoundTripsThroughEncodeAndDecode(string which)
    {
        var tokenizer = Get(which);
        var rng = new Random(13);
        for (int trial = 0; trial < 200; trial++)
        {
            string text = TokenizerTestData.RandomText(rng, rng.Next(0, 200));
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
            // Text and its UTF-8 bytes encode alike when specials are off.
            Assert.Equal(tokenizer.Encode(text, allowSpecial: false), tokenizer.EncodeBytes(Encoding.UTF8.GetBytes(text)));
        }
    }

    [Theory]
    [InlineData(".")]          // one UTF-16 char per match: would split every surrogate pair
    [InlineData("[a-z]+")]     // leaves everything else unmatched: gaps become pieces
    [InlineData("(?!)")]       // matches nothing: the whole text is one piece
    public void AnyPatternRoundTripsExactly(string pattern)
    {
        var tokenizer = BpeTokenizer.Train([TokenizerTestData.Corpus(6, 3000), "😀😀😀 x😀y"], 400, pattern: pattern);
        Assert.Equal(pattern, tokenizer.Pattern);
        var rng = new Random(19);
        for (int trial = 0; trial < 50; trial++)
        {
            string text = TokenizerTestData.RandomText(rng, rng.Next(0, 100)) + "😀";
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
            var bytes = TokenizerTestData.Utf8WithInvalid(rng, 10);
            Assert.Equal(bytes, tokenizer.DecodeBytes(tokenizer.EncodeBytes(bytes)));
        }
    }

    [Fact]
    public void DecodeReplacesOnlyInvalidUtf8()
    {
        var tokenizer = Trained.Value;
        byte[] bytes = [.. "ok "u8, 0xFF, .. " fine"u8];
        Assert.Equal("ok \uFFFD fine", tokenizer.Decode(tokenizer.EncodeBytes(bytes)));
    }

    [Fact]
    public void LoneSurrogatesEncodeAsReplacementCharacter()
    {
        var tokenizer = Trained.Value;
        Assert.Equal("a\uFFFDb", tokenizer.Decode(tokenizer.Encode("a\uD800b")));
        Assert.Equal("😀x", tokenizer.Decode(tokenizer.Encode("😀x"))); // a real pair stays whole
    }

    [Fact]
    public void ByteLevelTokenizerMapsEachByteToItsValue()
    {
        var tokenizer = BpeTokenizer.ByteLevel();
        Assert.Equal(256 + SpecialTokens.All.Count, tokenizer.VocabSize);
        Assert.Equal(256, tokenizer.RankCount);
        Assert.Equal([0x68, 0x69, 0xC3, 0xA9], tokenizer.Encode("hié"));
        Assert.Equal(256, tokenizer.SpecialTokenId(ChatTokens.ImSystem));
    }

    [Fact]
    public void DecodeRejectsIdsOutsideTheVocabularyNamingTheId()
    {
        var tokenizer = BpeTokenizer.ByteLevel();
        var e = Assert.Throws<ArgumentException>(() => tokenizer.Decode([1, 2, 267]));
        Assert.Contains("267", e.Message);
        Assert.Contains("position 2", e.Message);
        Assert.Contains("-1", Assert.Throws<ArgumentException>(() => tokenizer.DecodeBytes([-1])).Message);
    }

    [Fact]
    public void HeapMergeAgreesWithScanMerge()
    {
        // Long pieces take the heap path; compare with the scan on the same ids through many merges.
        var tokenizer = Trained.Value;
        var merges = MergeTable(tokenizer);
        var rng = new Random(17);
        long bytesIn = 0, idsOut = 0;
        string corpus = TokenizerTestData.Corpus(2, 4000).Replace(" ", "").Replace("\n", "");
        for (int trial = 0; trial < 100; trial++)
        {
            int start = rng.Next(corpus.Length - 400);
            var bytes = Encoding.UTF8.GetBytes(corpus.Substring(start, rng.Next(2, 400)));
            var a = Array.ConvertAll(bytes, b => (int)b);  // ranks of the bytes are their values here
            var b2 = (int[])a.Clone();
            int na = BpeTokenizer.MergeByScan(a, merges);
            int nb = BpeTokenizer.MergeByHeap(b2, merges);
            Assert.Equal(a[..na], b2[..nb]);
            (bytesIn, idsOut) = (bytesIn + bytes.Length, idsOut + na);
        }

        Assert.True(idsOut * 10 < bytesIn * 7, $"the trained merges should apply: {idsOut} ids for {bytesIn} bytes");
    }

    [Fact]
    public void LongPiecesRoundTrip()
    {
        var tokenizer = Trained.Value;
        string word = string.Concat(Enumerable.Repeat("katoresu", 200));
        string text = word + new string(' ', 5000) + "x" + string.Concat(Enumerable.Repeat("!?", 700));
        Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
        int ids = tokenizer.Encode(word).Length;
        Assert.True(ids * 10 < word.Length * 6, $"{ids} ids for {word.Length} bytes");
    }

    internal static Dictionary<long, int> MergeTable(BpeTokenizer tokenizer)
    {
        // Rebuild the pair table from the public token bytes, as the tokenizer does.
        var rankOf = new Dictionary<string, int>();
        for (int id = 0; id < tokenizer.RankCount; id++)
        {
            rankOf[Convert.ToHexString(tokenizer.TokenBytes(id))] = id;
        }

        var merges = new Dictionary<long, int>();
        for (int id = 0; id < tokenizer.RankCount; id++)
        {
            var token = tokenizer.TokenBytes(id);
            for (int k = 1; k < token.Length; k++)
            {
                if (rankOf.TryGetValue(Convert.ToHexString(token[..k]), out int l) && rankOf.TryGetValue(Convert.ToHexString(token[k..]), out int r))
                {
                    merges[BpeTokenizer.PairKey(l, r)] = id;
                }
            }
        }

        return merges;
    }
}
