using K2RL.CheckpointEngine;
using K2RL.Rollout;

namespace K2RL.Rollout.Tests;

public class RolloutEngineTests
{
    private static GenerationRequest Req(string id, int[] prompt, float temperature = 1f, int maxTokens = 24, ulong seed = 1,
        int topK = 0, float topP = 1f) =>
        new(id, prompt, new SamplingParams { Temperature = temperature, MaxTokens = maxTokens, Seed = seed, TopK = topK, TopP = topP, StopOnRepetition = false });

    private static GenerationResult RunAlone(GenerationRequest request, Func<HashDecoder>? make = null)
    {
        var engine = new RolloutEngine(make?.Invoke() ?? new HashDecoder());
        var h = engine.Submit(request);
        engine.RunUntilIdle();
        return h.Result!;
    }

    [Fact]
    public void SameRequestGivesSameTokensWhateverElseIsInTheBatch()
    {
        var target = Req("t", [1, 2, 3, 4, 5], temperature: 0.9f, maxTokens: 30, seed: 42, topP: 0.95f);
        var alone = RunAlone(target);

        var decoder = new HashDecoder(maxBatch: 6);
        var engine = new RolloutEngine(decoder);
        var others = new List<RequestHandle>();
        for (int i = 0; i < 5; i++)
        {
            others.Add(engine.Submit(Req($"o{i}", [i + 7, 3], temperature: 1.1f, maxTokens: 10 + 7 * i, seed: (ulong)i)));
        }

        engine.Step();
        engine.Step();
        var h = engine.Submit(target); // joins a running batch
        for (int i = 0; i < 3; i++)
        {
            engine.Step();
        }

        others.Add(engine.Submit(Req("late", [9], maxTokens: 40, seed: 9))); // and another joins mid-way
        engine.RunUntilIdle();

        var mixed = h.Result!;
        Assert.Equal(FinishReason.Length, mixed.FinishReason);
        Assert.Equal(alone.TokenIds, mixed.TokenIds);
        Assert.Equal(alone.Tokens.Select(t => t.LogProb), mixed.Tokens.Select(t => t.LogProb));
        Assert.Contains(decoder.BatchSizes, b => b >= 5);
        Assert.All(others, o => Assert.Equal(FinishReason.Length, o.Result!.FinishReason));
    }

    /// <summary>
    /// A decode step that throws is retried one sequence at a time: only the sequence that fails on its own ends
    /// with an error; the others go on with exactly the tokens and log-probabilities they get alone.
    /// </summary>
    [Fact]
    public void AFailingDecodeStepEndsOnlyTheSequenceAtFault()
    {
        var decoder = new HashDecoder(maxBatch: 4) { DecodePoisonToken = 13 };
        var engine = new RolloutEngine(decoder);
        var ok = new[] { 0, 2, 3 }.Select(i => engine.Submit(Req($"r{i}", [i + 1, 5], maxTokens: 8, seed: (ulong)i))).ToList();
        var bad = engine.Submit(Req("bad", [7, 13, 2], maxTokens: 8));
        engine.RunUntilIdle();

        Assert.Equal(FinishReason.Error, bad.Result!.FinishReason);
        Assert.Contains("decode step failed: decode poison token 13", bad.Result.Error);
        Assert.Single(bad.Result.Tokens); // the first token comes from prefill; the first decode step fails
        foreach (var (h, i) in ok.Zip(new[] { 0, 2, 3 }))
        {
            var alone = RunAlone(Req($"r{i}", [i + 1, 5], maxTokens: 8, seed: (ulong)i));
            Assert.Equal(FinishReason.Length, h.Result!.FinishReason);
            Assert.Equal(alone.TokenIds, h.Result.TokenIds);
            Assert.Equal(alone.Tokens.Select(t => t.LogProb), h.Result.Tokens.Select(t => t.LogProb));
        }

        Assert.Equal(decoder.TotalBlocks, decoder.FreeBlocks);
    }

    [Fact]
    public void RequestsAdmittedTogetherArePrefilledInOneBatchAndAFailingOneEndsAlone()
    {
        var decoder = new HashDecoder(maxBatch: 4) { PoisonToken = 13 };
        var engine = new RolloutEngine(decoder);
        var ok = new[] { 0, 2, 3 }.Select(i => engine.Submit(Req($"r{i}", [i + 1, 5], maxTokens: 6, seed: (ulong)i))).ToList();
        var bad = engine.Submit(Req("bad", [7, 13, 2], maxTokens: 6));
        engine.Step();
        Assert.Equal([4], decoder.PrefillBatchSizes);
        engine.RunUntilIdle();

        Assert.Equal(FinishReason.Error, bad.Result!.FinishReason);
        Assert.Contains("prefill failed", bad.Result.Error);
        Assert.All(ok, h => Assert.Equal(FinishReason.Length, h.Result!.FinishReason));
        Assert.Equal(RunAlone(Req("r2", [3, 5], maxTokens: 6, seed: 2)).TokenIds, ok[1].Result!.TokenIds);
        Assert.Equal(decoder.TotalBlocks, decoder.FreeBlocks);
    }

    [Fact]
    public void DifferentSeedsDiverge()
    {
        var a = RunAlone(Req("a", [1, 2], seed: 1, maxTokens: 20));
        var b = RunAlone(Req("a", [1, 2], seed: 2, maxTokens: 20));
        Assert.NotEqual(a.TokenIds, b.TokenIds);
    }

    [Fact]
    public void CacheBudgetIsNeverExceededAndRequestsBeyondItWait()
    {
        // Each request reserves ceil((4 + 20) / 4) = 6 blocks; the budget of 14 fits two at a time.
        var decoder = new HashDecoder(maxBatch: 8, blockTokens: 4, blocks: 64);
        var engine = new RolloutEngine(decoder, new EngineOptions { CacheBlockBudget = 14 });
        var handles = Enumerable.Range(0, 7).Select(i => engine.Submit(Req($"r{i}", [i, i + 1, i + 2, i + 3], maxTokens: 20, seed: (ulong)i))).ToList();
        int maxRunning = 0, sawWaiting = 0;
        while (engine.HasWork)
        {
            engine.Step();
            maxRunning = Math.Max(maxRunning, engine.RunningCount);
            Assert.True(engine.UsedBlocks <= 14, $"used {engine.UsedBlocks} blocks, budget 14");
            if (engine.WaitingCount > 0)
            {
                sawWaiting++;
            }
        }

        Assert.Equal(2, maxRunning);
        Assert.True(sawWaiting > 0);
        Assert.True(decoder.MaxAllocated <= 14);
        Assert.Equal(12, engine.PeakUsedBlocks);
        Assert.All(handles, h => Assert.Equal(FinishReason.Length, h.Result!.FinishReason));
        Assert.All(handles, h => Assert.Equal(20, h.Result!.Tokens.Count));
        Assert.Equal(0, engine.UsedBlocks);
        Assert.Equal(decoder.TotalBlocks, decoder.FreeBlocks);

        // The queued ones still give what they give alone.
        Assert.Equal(RunAlone(Req("r6", [6, 7, 8, 9], maxTokens: 20, seed: 6)).TokenIds, handles[6].Result!.TokenIds);
    }

    [Fact]
    public void EveryTokenCarriesItsLogProbAtTemperatureOneTheTemperatureAndVersion()
    {
        var decoder = new HashDecoder();
        var engine = new RolloutEngine(decoder, initialVersion: 3);
        var h = engine.Submit(Req("a", [5, 6, 7], temperature: 0.7f, maxTokens: 12, seed: 5));
        engine.RunUntilIdle();
        var r = h.Result!;

        // Replay the context through a fresh decoder and recompute each log-softmax at temperature 1.
        var check = new HashDecoder();
        var seq = check.NewSequence();
        for (int i = 0; i < 16; i++)
        {
            check.TryAllocateBlock(out int b);
            seq.Blocks.Add(b);
        }

        var row = new float[check.VocabSize];
        check.Prefill(seq, new[] { 5, 6, 7 }, row);
        foreach (var t in r.Tokens)
        {
            double max = row.Max(), sum = row.Sum(x => Math.Exp(x - max));
            Assert.Equal(row[t.Token] - max - Math.Log(sum), t.LogProb, 5);
            Assert.Equal(0.7f, t.Temperature);
            Assert.Equal(3, t.WeightVersion);
            check.DecodeStep([seq], new[] { t.Token }, row);
        }
    }

    [Fact]
    public void GreedyPicksTheArgmaxAndTopKOneOrTinyTopPMatchIt()
    {
        var greedy = RunAlone(Req("g", [3, 1], temperature: 0f, maxTokens: 16, seed: 1));
        var topK1 = RunAlone(Req("g", [3, 1], temperature: 1.3f, maxTokens: 16, seed: 99, topK: 1));
        var topP = RunAlone(Req("g", [3, 1], temperature: 1f, maxTokens: 16, seed: 7, topP: 1e-6f));
        Assert.Equal(greedy.TokenIds, topK1.TokenIds);
        Assert.Equal(greedy.TokenIds, topP.TokenIds);
        Assert.All(greedy.Tokens, t => Assert.Equal(0f, t.Temperature));
    }

    [Fact]
    public void StopTokenStopStringAndTokenBudget()
    {
        var free = RunAlone(Req("f", [2, 4], maxTokens: 30, seed: 3));
        Assert.Equal(FinishReason.Length, free.FinishReason);
        Assert.True(free.Truncated);
        Assert.Equal(30, free.Tokens.Count);

        int stopAt = 9;
        int stopToken = free.Tokens[stopAt].Token;
        int first = free.TokenIds.ToList().IndexOf(stopToken);
        var stopped = RunAlone(new GenerationRequest("f", [2, 4], new SamplingParams { MaxTokens = 30, Seed = 3, StopTokens = [stopToken], StopOnRepetition = false }));
        Assert.Equal(FinishReason.StopToken, stopped.FinishReason);
        Assert.False(stopped.Truncated);
        Assert.Equal(free.TokenIds[..(first + 1)], stopped.TokenIds);

        // Text: token t is the letter 'a' + t % 26; stop on the text of tokens 5..6.
        static string Text(IReadOnlyList<int> ids) => new(ids.Select(t => (char)('a' + t % 26)).ToArray());
        string stopText = Text(free.TokenIds[5..7]);
        int end = Text(free.TokenIds).IndexOf(stopText, StringComparison.Ordinal) + stopText.Length;
        var engine = new RolloutEngine(new HashDecoder(), new EngineOptions { Detokenize = Text });
        var h = engine.Submit(new GenerationRequest("f", [2, 4], new SamplingParams { MaxTokens = 30, Seed = 3, StopStrings = ["zzzzzz", stopText], StopOnRepetition = false }));
        engine.RunUntilIdle();
        Assert.Equal(FinishReason.StopString, h.Result!.FinishReason);
        Assert.Equal(free.TokenIds[..end], h.Result!.TokenIds);
    }

    [Fact]
    public void ContextLimitEndsTheResponseTruncated()
    {
        var r = RunAlone(Req("c", Enumerable.Range(0, 20).ToArray(), maxTokens: 100), () => new HashDecoder(maxContext: 32));
        Assert.Equal(FinishReason.ContextFull, r.FinishReason);
        Assert.True(r.Truncated);
        Assert.Equal(12, r.Tokens.Count);
    }

    [Fact]
    public void NewWeightsAreTakenAtAStepBoundaryAndSequencesInFlightContinue()
    {
        var decoder = new HashDecoder();
        var source = new InProcessWeightChannel();
        var engine = new RolloutEngine(decoder, weights: source);
        var h = engine.Submit(Req("w", [1, 2, 3], maxTokens: 20, seed: 11));
        for (int i = 0; i < 5; i++)
        {
            engine.Step();
        }

        source.Publish(new WeightSet(1, [0.5f]));
        source.Publish(new WeightSet(2, [0.25f])); // only the newest is loaded
        engine.RunUntilIdle();
        var r = h.Result!;
        Assert.Equal(FinishReason.Length, r.FinishReason);
        Assert.Equal(1, decoder.WeightLoads);
        Assert.All(r.Tokens.Take(5), t => Assert.Equal(0, t.WeightVersion));
        Assert.All(r.Tokens.Skip(5), t => Assert.Equal(2, t.WeightVersion));
        Assert.Equal(2, engine.WeightVersion);
    }

    [Fact]
    public void StuckRepeatingAnNgramEndsEarlyFlaggedDegenerate()
    {
        var engine = new RolloutEngine(new HashDecoder { Loop = 3 }, new EngineOptions { Repetition = new TokenRepetition { MinRepeats = 4, MinSpan = 12 } });
        var stuck = engine.Submit(new GenerationRequest("d", [0], new SamplingParams { MaxTokens = 200, Seed = 1 }));
        var allowed = engine.Submit(new GenerationRequest("e", [0], new SamplingParams { MaxTokens = 40, Seed = 1, StopOnRepetition = false }));
        engine.RunUntilIdle();
        var r = stuck.Result!;
        Assert.True(r.Degenerate);
        Assert.False(r.Truncated);
        Assert.Equal(12, r.Tokens.Count);
        Assert.Equal(FinishReason.Length, allowed.Result!.FinishReason);
    }

    [Fact]
    public void TokenRepetitionNeedsTheWholeSpanPeriodic()
    {
        var d = new TokenRepetition { MaxPeriod = 4, MinRepeats = 3, MinSpan = 6 };
        static SampledToken[] T(params int[] ids) => ids.Select(i => new SampledToken(i, 0, 1, 0)).ToArray();
        Assert.Equal(2, d.Period(T(9, 1, 2, 1, 2, 1, 2)));
        Assert.Equal(0, d.Period(T(9, 1, 2, 1, 2, 1, 3)));
        Assert.Equal(0, d.Period(T(1, 2, 1, 2, 1)));
        Assert.Equal(1, d.Period(T(5, 5, 5, 5, 5, 5)));
        Assert.Equal(4, d.Period(T(1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4)));
    }

    [Theory]
    [InlineData("long", "does not fit the context")]
    [InlineData("range", "outside the vocabulary")]
    [InlineData("negative", "outside the vocabulary")]
    [InlineData("nan", "temperature")]
    [InlineData("negtemp", "temperature")]
    [InlineData("topp0", "top_p")]
    [InlineData("topp2", "top_p")]
    [InlineData("empty", "empty")]
    [InlineData("stopstring", "tokenizer")]
    public void BadInputFailsThatRequestOnlyAndTheBatchContinues(string kind, string expected)
    {
        var ok1 = Req("ok1", [1, 2], maxTokens: 15, seed: 1);
        var ok2 = Req("ok2", [3], maxTokens: 25, seed: 2);
        var s = new SamplingParams { MaxTokens = 10, Seed = 4 };
        var bad = kind switch
        {
            "long" => new GenerationRequest("bad", Enumerable.Range(0, 256).Select(i => i % 64).ToArray(), s),
            "range" => new GenerationRequest("bad", [1, 64], s),
            "negative" => new GenerationRequest("bad", [-1], s),
            "nan" => new GenerationRequest("bad", [1], s with { Temperature = float.NaN }),
            "negtemp" => new GenerationRequest("bad", [1], s with { Temperature = -0.5f }),
            "topp0" => new GenerationRequest("bad", [1], s with { TopP = 0f }),
            "topp2" => new GenerationRequest("bad", [1], s with { TopP = 1.5f }),
            "empty" => new GenerationRequest("bad", [], s),
            _ => new GenerationRequest("bad", [1], s with { StopStrings = ["x"] }),
        };

        var decoder = new HashDecoder();
        var engine = new RolloutEngine(decoder);
        var h1 = engine.Submit(ok1);
        engine.Step();
        var hb = engine.Submit(bad);
        var h2 = engine.Submit(ok2);
        engine.RunUntilIdle();

        var rb = hb.Result!;
        Assert.Equal(FinishReason.Error, rb.FinishReason);
        Assert.Contains(expected, rb.Error);
        Assert.Empty(rb.Tokens);
        Assert.Equal(RunAlone(ok1).TokenIds, h1.Result!.TokenIds);
        Assert.Equal(RunAlone(ok2).TokenIds, h2.Result!.TokenIds);
        Assert.Equal(decoder.TotalBlocks, decoder.FreeBlocks);
    }

    [Fact]
    public void ARequestThatCanNeverFitTheBudgetIsRefused()
    {
        var engine = new RolloutEngine(new HashDecoder(blockTokens: 4), new EngineOptions { CacheBlockBudget = 3 });
        var h = engine.Submit(Req("big", [1, 2, 3], maxTokens: 50));
        engine.RunUntilIdle();
        Assert.Equal(FinishReason.Error, h.Result!.FinishReason);
        Assert.Contains("cache budget", h.Result!.Error);
    }

    [Fact]
    public void ACancelledRequestFreesItsBlocks()
    {
        var decoder = new HashDecoder(blockTokens: 4, blocks: 64);
        var engine = new RolloutEngine(decoder);
        var keep = engine.Submit(Req("keep", [1, 2], maxTokens: 30, seed: 1));
        var gone = engine.Submit(Req("gone", [3, 4], maxTokens: 30, seed: 2));
        var queued = engine.Submit(Req("queued", [5], maxTokens: 30, seed: 3));
        for (int i = 0; i < 4; i++)
        {
            engine.Step();
        }

        int before = engine.UsedBlocks;
        Assert.Equal(3 * 8, before);
        gone.Cancel();
        engine.Step();
        Assert.Equal(FinishReason.Cancelled, gone.Result!.FinishReason);
        Assert.Equal(4, gone.Result!.Tokens.Count); // one per step before the cancel
        Assert.Equal(before - 8, engine.UsedBlocks);
        Assert.Equal(64 - (before - 8), decoder.FreeBlocks);

        queued.Cancel();
        engine.RunUntilIdle();
        Assert.Equal(FinishReason.Cancelled, queued.Result!.FinishReason);
        Assert.Equal(RunAlone(Req("keep", [1, 2], maxTokens: 30, seed: 1)).TokenIds, keep.Result!.TokenIds);
        Assert.Equal(64, decoder.FreeBlocks);
        Assert.Equal(0, engine.UsedBlocks);
    }

    [Fact]
    public void RequestsWithoutASeedGetOneReportedThatReproducesThem()
    {
        var engine = new RolloutEngine(new HashDecoder());
        var h = engine.Submit(new GenerationRequest("n", [1], new SamplingParams { MaxTokens = 12, StopOnRepetition = false }));
        engine.RunUntilIdle();
        var r = h.Result!;
        var again = RunAlone(Req("n", [1], maxTokens: 12, seed: r.Seed));
        Assert.Equal(r.TokenIds, again.TokenIds);
    }

    [Fact]
    public void SampleableVocabKeepsIdsBelowTheLimitAndLogProbsOverTheWholeVocabulary()
    {
        var engine = new RolloutEngine(new HashDecoder(vocab: 64), new EngineOptions { SampleableVocab = 10 });
        var h = engine.Submit(Req("m", [1, 2], maxTokens: 50, seed: 3));
        engine.RunUntilIdle();
        Assert.All(h.Result!.Tokens, t => Assert.InRange(t.Token, 0, 9));
        Assert.True(h.Result!.Tokens.Sum(t => Math.Exp(t.LogProb)) < 50 * 0.5, "log-probs are over all 64 ids, not renormalized over 10");
    }

    [Fact]
    public void CacheBudgetInBytesIsWholeBlocks()
    {
        // HashDecoder: 16 bytes per token, 4 tokens per block = 64 bytes a block.
        Assert.Equal(3, new RolloutEngine(new HashDecoder(blockTokens: 4), new EngineOptions { CacheBudgetBytes = 64 * 3 + 63 }).BlockBudget);
        Assert.Equal(2, new RolloutEngine(new HashDecoder(blockTokens: 4), new EngineOptions { CacheBudgetBytes = 64 * 3, CacheBlockBudget = 2 }).BlockBudget);
        Assert.Throws<ArgumentException>(() => new RolloutEngine(new HashDecoder(), new EngineOptions { CacheBudgetBytes = 10 }));
    }
}
