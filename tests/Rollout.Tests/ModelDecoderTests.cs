using K2RL.CheckpointEngine;
using K2RL.Model;
using K2RL.Model.Inference;
using K2RL.Rollout;
using K2RL.Tests.Shared;

namespace K2RL.Rollout.Tests;

/// <summary>The engine's behaviour again, now over the real model (k2-test and k2-nano shapes, random weights).</summary>
public class ModelDecoderTests
{
    private static ModelConfig Preset(string name) =>
        ModelConfig.Load(Path.Combine(ExternalTools.RepoRoot(), "configs", "models", name + ".json"));

    private static readonly Dictionary<(string, ulong), float[]> WeightCache = [];

    private static float[] Weights(ModelConfig config, string name, ulong seed)
    {
        lock (WeightCache)
        {
            if (!WeightCache.TryGetValue((name, seed), out var w))
            {
                var model = new K2Model(config);
                model.InitializeWeights(seed);
                // Sharpen the random policy so that sampling is not uniform noise (the 0.02 init gives near-flat logits).
                var head = model.Layout[config.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight"];
                foreach (ref float x in head.Of(model.Parameters))
                {
                    x *= 40f;
                }

                w = model.Parameters;
                WeightCache[(name, seed)] = w;
            }

            return w;
        }
    }

    private static ModelDecoder Decoder(string name, int maxBatch = 4, int blockTokens = 8, int? blocks = null, ulong seed = 5,
        WeightPrecision precision = WeightPrecision.F32)
    {
        var config = Preset(name);
        var d = new ModelDecoder(config, maxBatch, blockTokens, blocks, precision);
        d.LoadWeights(Weights(config, name, seed));
        return d;
    }

    private static GenerationRequest Req(string id, int[] prompt, int maxTokens, ulong seed, float temperature = 1f, float topP = 1f) =>
        new(id, prompt, new SamplingParams { Temperature = temperature, TopP = topP, MaxTokens = maxTokens, Seed = seed, StopOnRepetition = false });

    [Theory]
    [InlineData("k2-test", WeightPrecision.F32)]
    [InlineData("k2-nano", WeightPrecision.F32)]
    [InlineData("k2-nano", WeightPrecision.Bf16)]
    public void SameRequestGivesSameTokensWhateverElseIsInTheBatch(string preset, WeightPrecision precision)
    {
        var target = Req("t", [1, 2, 3, 4, 5], 20, 42, temperature: 0.9f, topP: 0.95f);
        var alone = new RolloutEngine(Decoder(preset, precision: precision));
        var ha = alone.Submit(target);
        alone.RunUntilIdle();

        var engine = new RolloutEngine(Decoder(preset, precision: precision));
        var others = Enumerable.Range(0, 3).Select(i => engine.Submit(Req($"o{i}", [7 + i, 3, i], 8 + 5 * i, (ulong)i))).ToList();
        engine.Step();
        engine.Step();
        var hm = engine.Submit(target);
        engine.RunUntilIdle();

        Assert.Equal(ha.Result!.TokenIds, hm.Result!.TokenIds);
        Assert.Equal(ha.Result!.Tokens.Select(t => t.LogProb), hm.Result!.Tokens.Select(t => t.LogProb));
        Assert.All(others, o => Assert.Equal(FinishReason.Length, o.Result!.FinishReason));
        Assert.Equal(engine.Decoder.TotalBlocks, engine.Decoder.FreeBlocks);
    }

    [Fact]
    public void PauseAndResumeOverTheRealModelGivesTheUninterruptedTokens()
    {
        var requests = new[]
        {
            Req("a", [1, 2, 3], 30, 1, temperature: 0.8f),
            Req("b", [4], 40, 2, temperature: 1.1f, topP: 0.9f),
            Req("c", [5, 6, 7, 8, 9], 20, 3, temperature: 0f),
        };
        var whole = new RolloutEngine(Decoder("k2-nano"));
        var expected = requests.Select(r => whole.Submit(r)).ToList();
        whole.RunUntilIdle();

        var store = new InMemoryPartialRolloutStore();
        var engine = new RolloutEngine(Decoder("k2-nano"));
        var handles = requests.Select(r => engine.Submit(r)).ToList();
        var finished = new Dictionary<string, GenerationResult>();
        int iterations = 0;
        while (true)
        {
            engine.RunIteration(13, store);
            iterations++;
            foreach (var h in handles.Where(h => h.Result!.FinishReason != FinishReason.Paused))
            {
                finished[h.Id] = h.Result!;
            }

            var partials = store.TakeAll();
            if (partials.Count == 0)
            {
                break;
            }

            engine = new RolloutEngine(Decoder("k2-nano"));
            handles = partials.Select(p => engine.Resume(p)).ToList();
        }

        Assert.True(iterations >= 3);
        foreach (var e in expected)
        {
            var want = e.Result!;
            var got = finished[want.Id];
            Assert.Equal(want.TokenIds, got.TokenIds);
            // After a resume the first logits come from the plain prefill path rather than absorbed decode:
            // equal to float rounding.
            for (int i = 0; i < want.Tokens.Count; i++)
            {
                Assert.True(Math.Abs(want.Tokens[i].LogProb - got.Tokens[i].LogProb) < 1e-4, $"{want.Id} token {i}: {want.Tokens[i].LogProb} vs {got.Tokens[i].LogProb}");
            }
        }
    }

    [Fact]
    public void NewWeightsChangeTheTokensFromTheStepTheyAreTaken()
    {
        var config = Preset("k2-test");
        var source = new InProcessWeightChannel();
        var engine = new RolloutEngine(Decoder("k2-test"), weights: source);
        var h = engine.Submit(Req("w", [1, 2], 30, 9, temperature: 0f));
        for (int i = 0; i < 4; i++)
        {
            engine.Step();
        }

        source.Publish(new WeightSet(1, Weights(config, "k2-test", 99)));
        engine.RunUntilIdle();
        var r = h.Result!;
        Assert.Equal(30, r.Tokens.Count);
        Assert.Equal([0, 0, 0, 0], r.Tokens.Take(4).Select(t => t.WeightVersion));
        Assert.All(r.Tokens.Skip(4), t => Assert.Equal(1, t.WeightVersion));

        // The tokens after the switch are what the new weights give that context.
        var check = new RolloutEngine(Decoder("k2-test", seed: 99));
        var hc = check.Resume(new PartialRollout
        {
            Id = "w", Prompt = [1, 2], Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 30, StopOnRepetition = false },
            Tokens = r.Tokens.Take(4).ToArray(), Seed = 9, RngState = 0,
        });
        check.RunUntilIdle();
        Assert.Equal(r.TokenIds, hc.Result!.TokenIds);
    }

    [Fact]
    public void AVersionIsReadInPlaceAndItsBufferIsNotReusedUntilTheEngineHasMovedOn()
    {
        var config = Preset("k2-test");
        float[] p1 = Weights(config, "k2-test", 11), p2 = Weights(config, "k2-test", 12), p3 = Weights(config, "k2-test", 13);
        var channel = new InProcessWeightChannel();
        var engine = new RolloutEngine(Decoder("k2-test"), weights: channel);
        channel.Publish(1, p1);
        Assert.True(engine.SyncWeights());
        Assert.True(channel.TryGetNewer(0, out var v1));
        channel.Release(v1!);
        float[] held = v1!.Parameters;   // the buffer the engine's decoder now reads

        // The trainer keeps publishing while the engine stays on version 1: none of that lands in the held buffer.
        for (int v = 2; v <= 6; v++)
        {
            channel.Publish(v, v % 2 == 0 ? p2 : p3);
        }

        Assert.Equal(p1, held);

        // The engine moves to version 6 and lets version 1 go: its buffer serves a later version.
        Assert.True(engine.SyncWeights());
        Assert.Equal(6, engine.WeightVersion);
        var reused = false;
        for (int v = 7; v <= 8; v++)
        {
            channel.Publish(v, p2);
            Assert.True(channel.TryGetNewer(v - 1, out var w));
            channel.Release(w!);
            reused |= ReferenceEquals(w!.Parameters, held);
        }

        Assert.True(reused, "the buffer of version 1 was never reused after the engine released it");

        // What the engine generates on version 8 (read in place from a reused buffer) is what a copy of p2 gives.
        var h = engine.Submit(Req("g", [3, 4, 5], 20, 1, temperature: 0f));
        engine.RunUntilIdle();
        Assert.All(h.Result!.Tokens, t => Assert.Equal(8, t.WeightVersion));
        var check = new RolloutEngine(Decoder("k2-test", seed: 12));
        var hc = check.Submit(Req("g", [3, 4, 5], 20, 1, temperature: 0f));
        check.RunUntilIdle();
        Assert.Equal(hc.Result!.TokenIds, h.Result!.TokenIds);
    }

    [Fact]
    public void SharingIsRefusedForBf16AndALoadAfterASharedVersionNeverWritesIntoIt()
    {
        var config = Preset("k2-test");
        float[] shared = (float[])Weights(config, "k2-test", 11).Clone(), copy = (float[])shared.Clone();
        var f32 = new ModelDecoder(config, 2);
        Assert.True(f32.TryShareWeights(shared));
        f32.LoadWeights(Weights(config, "k2-test", 12));
        Assert.Equal(copy, shared);
        Assert.False(new ModelDecoder(config, 2, precision: WeightPrecision.Bf16).TryShareWeights(shared));
        Assert.Throws<ArgumentException>(() => f32.TryShareWeights(new float[3]));

        // A bf16 engine still takes new versions (by copy) and releases each at once.
        var channel = new InProcessWeightChannel();
        var engine = new RolloutEngine(Decoder("k2-test", precision: WeightPrecision.Bf16), weights: channel);
        channel.Publish(1, shared);
        Assert.True(engine.SyncWeights());
        Assert.True(channel.TryGetNewer(0, out var v1));
        channel.Release(v1!);
        channel.Publish(2, shared);
        channel.Publish(3, shared);
        Assert.True(channel.TryGetNewer(2, out var v3));
        channel.Release(v3!);
        Assert.Same(v1!.Parameters, v3!.Parameters);   // version 1's buffer was free at once: the engine copied it
        Assert.True(engine.SyncWeights());
        Assert.Equal(3, engine.WeightVersion);
    }

    [Fact]
    public void CacheBudgetInBlocksOfTheRealPool()
    {
        var decoder = Decoder("k2-test", maxBatch: 8, blockTokens: 8, blocks: 40);
        var engine = new RolloutEngine(decoder, new EngineOptions { CacheBlockBudget = 10 });
        var hs = Enumerable.Range(0, 6).Select(i => engine.Submit(Req($"r{i}", [i + 1, 2, 3], 29, (ulong)i))).ToList(); // 4 blocks each
        while (engine.HasWork)
        {
            engine.Step();
            Assert.True(decoder.TotalBlocks - decoder.FreeBlocks <= 10);
        }

        Assert.Equal(8, engine.PeakUsedBlocks);
        Assert.All(hs, h => Assert.Equal(29, h.Result!.Tokens.Count));
        Assert.Equal(40, decoder.FreeBlocks);
    }
}
