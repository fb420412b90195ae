using K2RL.Model;
using K2RL.Model.Tokenization;
using K2RL.Rollout;
using K2RL.Tests.Shared;

namespace K2RL.Rollout.Tests;

public class TextAndBenchTests
{
    [Fact]
    public void TextStreamerHoldsBackAPartialCharacterAndConcatenatesToTheWholeText()
    {
        var tok = BpeTokenizer.ByteLevel();
        int[] ids = tok.Encode("é ✓ ok");
        var streamer = new TextStreamer(x => tok.Decode(x.ToArray()));
        var pieces = ids.Select(streamer.Push).ToList();
        Assert.Equal("", pieces[0]); // the first byte of 'é' alone is not text yet
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        Assert.Equal("é ✓ ok", string.Concat(pieces) + streamer.Flush());
    }

    [Fact]
    public void StopStringsWorkWithTheByteLevelTokenizer()
    {
        var tok = BpeTokenizer.ByteLevel();
        var decoder = new HashDecoder(vocab: 256);
        var options = new EngineOptions { Detokenize = x => tok.Decode(x.ToArray()) };
        var free = new RolloutEngine(decoder, options);
        var h = free.Submit(new GenerationRequest("a", [65], new SamplingParams { MaxTokens = 40, Seed = 2, StopOnRepetition = false }));
        free.RunUntilIdle();
        string text = tok.Decode(h.Result!.TokenIds);
        string stop = text.Substring(10, 2);
        var engine = new RolloutEngine(new HashDecoder(vocab: 256), options);
        var hs = engine.Submit(new GenerationRequest("a", [65], new SamplingParams { MaxTokens = 40, Seed = 2, StopOnRepetition = false, StopStrings = [stop] }));
        engine.RunUntilIdle();
        Assert.Equal(FinishReason.StopString, hs.Result!.FinishReason);
        Assert.EndsWith(stop, tok.Decode(hs.Result!.TokenIds));
        Assert.Equal(h.Result!.TokenIds[..hs.Result!.Tokens.Count], hs.Result!.TokenIds);
    }

    [Fact]
    public void DecodeBenchmarkRunsTheRealEngineAndReportsBothFigures()
    {
        var config = ModelConfig.Load(Path.Combine(ExternalTools.RepoRoot(), "configs", "models", "k2-test.json"));
        var r = DecodeBenchmark.Run(config, batch: 3, promptTokens: 5, newTokens: 6);
        Assert.True(r.PrefillTokensPerSecond > 0 && double.IsFinite(r.PrefillTokensPerSecond));
        Assert.True(r.DecodeTokensPerSecond > 0 && double.IsFinite(r.DecodeTokensPerSecond));
        Assert.InRange(r.DecodeModelShare, 0, 1);
        Assert.Throws<ArgumentException>(() => DecodeBenchmark.Run(config, 2, 60, 10)); // past the context of 64
    }
}
