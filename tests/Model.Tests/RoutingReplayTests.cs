using K2RL.Model.Inference;

namespace K2RL.Model.Tests;

/// <summary>
/// Routing replay: the decode model's routing record (per position, per MoE layer, the K experts taken) and the
/// training forward that replays it.
/// </summary>
public class RoutingReplayTests
{
    private static (ModelConfig Config, K2Model Model, int[] Tokens) Setup(int length = 19)
    {
        var config = ModelTestUtil.Preset("k2-nano");
        var model = new K2Model(config);
        ModelTestUtil.FillTestWeights(model, seed: 23);
        var rng = new Random(5);
        var tokens = Enumerable.Range(0, length).Select(_ => rng.Next(config.VocabSize)).ToArray();
        return (config, model, tokens);
    }

    /// <summary>The training forward's own routing of one sequence as a record [T, stride].</summary>
    private static int[] OwnRouting(K2Model model, int[] tokens)
    {
        var c = model.Config;
        int K = c.NumExpertsPerTok, stride = c.RoutingStride, T = tokens.Length;
        var record = new int[T * stride];
        model.Forward(tokens, new int[T], 1, T);
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            int m = c.MoeIndex(l);
            if (m < 0)
            {
                continue;
            }

            var selected = model.ChosenExperts(l);
            for (int t = 0; t < T; t++)
            {
                selected.Slice(t * K, K).CopyTo(record.AsSpan(t * stride + m * K, K));
            }
        }

        return record;
    }

    [Fact]
    public void TheStrideIsKPerMoeLayer()
    {
        var config = ModelTestUtil.Preset("k2-nano");
        int moeLayers = Enumerable.Range(0, config.NumHiddenLayers).Count(config.IsMoeLayer);
        Assert.Equal(moeLayers * config.NumExpertsPerTok, config.RoutingStride);
        Assert.Equal(-1, config.MoeIndex(0));                 // k2-nano's first layer is dense
        Assert.Equal(0, config.MoeIndex(config.FirstKDenseReplace));
    }

    [Fact]
    public void PrefillAndDecodeRecordTheExpertsTheTrainingForwardChooses()
    {
        var (config, model, tokens) = Setup();
        var own = OwnRouting(model, tokens);
        var pool = new KvBlockPool(config, blockTokens: 4, numBlocks: 16);
        var dm = new DecodeModel(config, pool, maxBatch: 2);
        dm.LoadWeights(model.Parameters);
        var seq = new SequenceCache { Routing = new RoutingLog(config.RoutingStride) };
        var other = new SequenceCache();   // keeps no record: the step must not care
        while (seq.Capacity(pool) < tokens.Length)
        {
            Assert.True(pool.TryAllocate(out int b));
            seq.Blocks.Add(b);
            Assert.True(pool.TryAllocate(out int b2));
            other.Blocks.Add(b2);
        }

        var logits = new float[2 * config.VocabSize];
        int prefill = 9;
        dm.PrefillBatch([seq, other], [.. tokens[..prefill], .. tokens[..prefill]], [prefill, prefill], logits);
        for (int t = prefill; t < tokens.Length; t++)
        {
            dm.DecodeStep([seq, other], [tokens[t], tokens[t]], logits);
        }

        Assert.Equal(tokens.Length, seq.Routing!.Positions);
        var recorded = seq.Routing.Copy(tokens.Length);
        // sets per (position, layer): the orders may differ only where two chosen scores tie
        int stride = config.RoutingStride, K = config.NumExpertsPerTok;
        for (int i = 0; i < recorded.Length; i += K)
        {
            Assert.Equal(own.AsSpan(i, K).ToArray().Order(), recorded.AsSpan(i, K).ToArray().Order());
        }

        Assert.Equal(tokens.Length * stride, recorded.Length);
        Assert.Null(other.Routing);
    }

    [Fact]
    public void ReplayingTheModelsOwnRoutingChangesNothingAndCountsNoFlip()
    {
        var (_, model, tokens) = Setup();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        float plain = model.Forward(tokens, targets, 1, tokens.Length);
        var plainLosses = model.TokenLosses.ToArray();
        var own = OwnRouting(model, tokens);

        float replayed = model.Forward(tokens, targets, 1, tokens.Length, own);
        Assert.Equal(plain, replayed);
        Assert.Equal(plainLosses, model.TokenLosses.ToArray());
        Assert.Equal(0, model.ReplayFlips);
    }

    [Fact]
    public void ReplayingOtherExpertsRoutesThereAndCountsTheFlips()
    {
        var (config, model, tokens) = Setup();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        model.Forward(tokens, targets, 1, tokens.Length);
        var plainLosses = model.TokenLosses.ToArray();
        var own = OwnRouting(model, tokens);
        int K = config.NumExpertsPerTok, E = config.NRoutedExperts, stride = config.RoutingStride;

        // position 4, first MoE layer: K experts none of which the model chose; every other slice: −1 (own routing)
        var replay = Enumerable.Repeat(-1, own.Length).ToArray();
        var chosen = own.AsSpan(4 * stride, K).ToArray();
        var others = Enumerable.Range(0, E).Where(e => !chosen.Contains(e)).Take(K).ToArray();
        others.CopyTo(replay, 4 * stride);
        model.Forward(tokens, targets, 1, tokens.Length, replay);
        Assert.Equal(1, model.ReplayFlips);
        Assert.Equal(others, model.ChosenExperts(config.FirstKDenseReplace).Slice(4 * K, K).ToArray());
        var losses = model.TokenLosses.ToArray();
        Assert.Equal(plainLosses[..4], losses[..4]);        // causal: earlier positions are untouched
        Assert.NotEqual(plainLosses[4], losses[4]);
    }

    [Theory]
    [InlineData(-2)]     // not an expert
    [InlineData(32)]     // E = 32: out of range
    [InlineData(999)]
    public void AReplayedRoutingWithABadExpertIdIsRefused(int bad)
    {
        var (config, model, tokens) = Setup(length: 6);
        var replay = Enumerable.Repeat(-1, tokens.Length * config.RoutingStride).ToArray();
        replay[2 * config.RoutingStride] = 0;
        replay[2 * config.RoutingStride + 1] = bad;
        if (bad == -2)
        {
            replay[2 * config.RoutingStride + 1] = 0;   // a repeated id
        }

        var e = Assert.Throws<ArgumentException>(() => model.Forward(tokens, new int[tokens.Length], 1, tokens.Length, replay));
        Assert.Contains("replayed routing of token 2", e.Message);
    }

    [Fact]
    public void AReplayedRoutingOfTheWrongSizeIsRefused()
    {
        var (config, model, tokens) = Setup(length: 6);
        var e = Assert.Throws<ArgumentException>(() => model.Forward(tokens, new int[6], 1, 6, new int[6 * config.RoutingStride - 1]));
        Assert.Contains("routing record", e.Message);
    }

    [Fact]
    public void ARoutingLogGrowsReadsMinusOneWhereNeverWrittenAndClears()
    {
        var log = new RoutingLog(3);
        log.At(4)[1] = 7;
        Assert.Equal(5, log.Positions);
        var copy = log.Copy(6);
        Assert.Equal(18, copy.Length);
        Assert.Equal(7, copy[13]);
        Assert.Equal(17, copy.Count(i => i == -1));
        log.Clear();
        Assert.Equal(0, log.Positions);
        Assert.All(log.Copy(5), i => Assert.Equal(-1, i));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RoutingLog(0));
    }
}
