using K2RL.Kernels;
using K2RL.Model.Inference;
using K2RL.Model.Layers;
using Xunit.Abstractions;

namespace K2RL.Model.Tests;

/// <summary>Absorbed decode and plain prefill over the compressed cache against the training forward.</summary>
public class DecodeModelTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PrefillAndAbsorbedDecodeGiveTheTrainingForwardsLogitsAtEveryPosition(bool testWeights)
    {
        var config = ModelTestUtil.Preset("k2-nano");
        var model = new K2Model(config);
        if (testWeights)
        {
            ModelTestUtil.FillTestWeights(model, seed: 17);
        }
        else
        {
            model.InitializeWeights(17);
        }

        int V = config.VocabSize;
        int[] lengths = [21, 13, 7];
        int[][] prefillPlan = [[9, 3], [1], [5]]; // then one token at a time
        var rng = new Random(3);
        var seqTokens = lengths.Select(n => Enumerable.Range(0, n).Select(_ => rng.Next(V)).ToArray()).ToArray();
        // expected: the training forward of each sequence alone
        var expected = seqTokens.Select(t =>
        {
            model.Forward(t, new int[t.Length], 1, t.Length);
            return model.Logits.ToArray();
        }).ToArray();

        var pool = new KvBlockPool(config, blockTokens: 4, numBlocks: 16);
        Assert.Equal(6L * (64 + 16) * 4, pool.BytesPerToken);
        var dm = new DecodeModel(config, pool, maxBatch: 4);
        dm.LoadWeights(model.Parameters);
        var seqs = lengths.Select(_ => new SequenceCache()).ToArray();
        void Ensure(SequenceCache s, int length)
        {
            while (s.Capacity(pool) < length)
            {
                Assert.True(pool.TryAllocate(out int b));
                s.Blocks.Add(b);
            }
        }

        double worst = 0;
        void Compare(int seq, int pos, ReadOnlySpan<float> got)
        {
            for (int v = 0; v < V; v++)
            {
                worst = Math.Max(worst, Math.Abs(got[v] - expected[seq][pos * V + v]));
            }
        }

        // first: one batched prefill of every sequence's opening run (different lengths, empty caches)
        var firstCounts = prefillPlan.Select(plan => plan[0]).ToArray();
        for (int s = 0; s < seqs.Length; s++)
        {
            Ensure(seqs[s], firstCounts[s]);
        }

        var batchTokens = seqTokens.SelectMany((t, s) => t.Take(firstCounts[s])).ToArray();
        var lastBatch = new float[seqs.Length * V];
        var allBatch = new float[batchTokens.Length * V];
        dm.PrefillBatch(seqs, batchTokens, firstCounts, lastBatch, allBatch);
        for (int s = 0, row = 0; s < seqs.Length; row += firstCounts[s], s++)
        {
            Assert.Equal(firstCounts[s], seqs[s].Length);
            for (int i = 0; i < firstCounts[s]; i++)
            {
                Compare(s, i, allBatch.AsSpan((row + i) * V, V));
            }

            Compare(s, firstCounts[s] - 1, lastBatch.AsSpan(s * V, V));
        }

        // the batched prefill's max logits are the max over its sequences of the training forward's
        var expectedMax = new float[config.NumHiddenLayers * config.NumAttentionHeads];
        Array.Fill(expectedMax, float.NegativeInfinity);
        for (int s = 0; s < seqs.Length; s++)
        {
            var prefix = seqTokens[s].Take(firstCounts[s]).ToArray();
            model.Forward(prefix, new int[prefix.Length], 1, prefix.Length);
            for (int i = 0; i < expectedMax.Length; i++)
            {
                expectedMax[i] = Math.Max(expectedMax[i], model.MaxLogits[i]);
            }
        }

        for (int i = 0; i < expectedMax.Length; i++)
        {
            Assert.Equal(expectedMax[i], dm.MaxLogits[i], 1e-4f);
        }

        // then: single-sequence prefills on top of what is cached
        var last = new float[V];
        for (int s = 0; s < seqs.Length; s++)
        {
            foreach (int n in prefillPlan[s].Skip(1))
            {
                int start = seqs[s].Length;
                Ensure(seqs[s], start + n);
                var all = new float[n * V];
                dm.Prefill(seqs[s], seqTokens[s].AsSpan(start, n), last, all);
                Assert.Equal(start + n, seqs[s].Length);
                for (int i = 0; i < n; i++)
                {
                    Compare(s, start + i, all.AsSpan(i * V, V));
                }

                Assert.Equal(all.AsSpan((n - 1) * V, V).ToArray(), last);
            }
        }

        double prefillWorst = worst;
        // decode: sequences leave the batch as they finish; each step feeds each live sequence its next token
        var logits = new float[4 * V];
        while (true)
        {
            var live = Enumerable.Range(0, seqs.Length).Where(s => seqs[s].Length < lengths[s]).ToArray();
            if (live.Length == 0)
            {
                break;
            }

            var batch = live.Select(s => seqs[s]).ToList();
            var tokens = live.Select(s => seqTokens[s][seqs[s].Length]).ToArray();
            var positions = live.Select(s => seqs[s].Length).ToArray();
            foreach (int s in live)
            {
                Ensure(seqs[s], seqs[s].Length + 1);
            }

            dm.DecodeStep(batch, tokens, logits);
            for (int b = 0; b < live.Length; b++)
            {
                Assert.Equal(positions[b] + 1, seqs[live[b]].Length);
                Compare(live[b], positions[b], logits.AsSpan(b * V, V));
            }
        }

        double scale = expected.SelectMany(e => e).Max(Math.Abs);
        output.WriteLine($"weights: {(testWeights ? "O(1) test weights" : "InitializeWeights")}; max |logit| {scale:F4}; " +
            $"prefill max |diff| {prefillWorst:E2}; overall (prefill + decode) max |diff| {worst:E2}");
        Assert.True(worst <= 1e-4, $"decode logits differ from the training forward by {worst}");
        Assert.Equal(16 - (6 + 4 + 2), pool.FreeBlocks);
    }

    [Fact]
    public void PoolHandsOutEveryBlockOnceAndRejectsDoubleFree()
    {
        var pool = new KvBlockPool(ModelTestUtil.Preset("k2-test"), 8, 3);
        Assert.True(pool.TryAllocate(out int a));
        Assert.True(pool.TryAllocate(out int b));
        Assert.True(pool.TryAllocate(out int c));
        Assert.Equal(new[] { 0, 1, 2 }, new[] { a, b, c });
        Assert.False(pool.TryAllocate(out _));
        pool.Free(b);
        Assert.Throws<InvalidOperationException>(() => pool.Free(b));
        Assert.Equal(1, pool.FreeBlocks);
        Assert.True(pool.TryAllocate(out int again));
        Assert.Equal(b, again);
    }

    [Fact]
    public void DecodeRejectsOutOfVocabularyTokensAndMissingBlocks()
    {
        var config = ModelTestUtil.Preset("k2-test");
        var model = new K2Model(config);
        model.InitializeWeights(1);
        var pool = new KvBlockPool(config, 4, 4);
        var dm = new DecodeModel(config, pool, 2);
        dm.LoadWeights(model.Parameters);
        var seq = new SequenceCache();
        var logits = new float[config.VocabSize];
        Assert.Throws<InvalidOperationException>(() => dm.Prefill(seq, new[] { 1, 2 }, logits));
        pool.TryAllocate(out int blk);
        seq.Blocks.Add(blk);
        var e = Assert.Throws<ArgumentException>(() => dm.Prefill(seq, new[] { 1, config.VocabSize + 2 }, logits));
        Assert.Contains($"token id {config.VocabSize + 2} at position 1", e.Message);
        dm.Prefill(seq, new[] { 1, 2 }, logits);
        e = Assert.Throws<ArgumentException>(() => dm.DecodeStep(new[] { seq }, new[] { -1 }, logits));
        Assert.Contains("token id -1", e.Message);
        Assert.Equal(2, seq.Length);
    }

    /// <summary>
    /// At the benchmark's batch (32, where decode cuts its products into column parts run by the model threads
    /// and runs the shared expert beside the routed ones), a step's logits are the same bits on every run, and
    /// each sequence's are exactly its logits decoded alone: no product's bits depend on how many rows it has (the
    /// decode experts always take the few-row product, prefill's the packed GEMM).
    /// </summary>
    [Fact]
    public void DecodeAtBatch32IsRepeatableAndAgreesWithDecodingAlone()
    {
        var config = ModelTestUtil.Preset("k2-nano");
        var model = new K2Model(config);
        model.InitializeWeights(5);
        int V = config.VocabSize, B = 32, prompt = 6, steps = 3;
        var rng = new Random(9);
        var prompts = Enumerable.Range(0, B).Select(_ => Enumerable.Range(0, prompt).Select(_ => rng.Next(V)).ToArray()).ToArray();
        var next = Enumerable.Range(0, steps).Select(_ => Enumerable.Range(0, B).Select(_ => rng.Next(V)).ToArray()).ToArray();

        float[][] Run(int[] members)
        {
            var pool = new KvBlockPool(config, blockTokens: 4, numBlocks: members.Length * 3);
            var dm = new DecodeModel(config, pool, maxBatch: B);
            dm.LoadWeights(model.Parameters);
            var seqs = members.Select(_ => new SequenceCache()).ToArray();
            foreach (var s in seqs)
            {
                for (int i = 0; i < 3; i++)
                {
                    Assert.True(pool.TryAllocate(out int blk));
                    s.Blocks.Add(blk);
                }
            }

            var last = new float[members.Length * V];
            dm.PrefillBatch(seqs, members.SelectMany(m => prompts[m]).ToArray(), members.Select(_ => prompt).ToArray(), last);
            var logits = new float[steps][];
            for (int t = 0; t < steps; t++)
            {
                logits[t] = new float[members.Length * V];
                dm.DecodeStep(seqs, members.Select(m => next[t][m]).ToArray(), logits[t]);
            }

            return logits;
        }

        var all = Enumerable.Range(0, B).ToArray();
        var first = Run(all);
        var second = Run(all);
        for (int t = 0; t < steps; t++)
        {
            Assert.True(first[t].AsSpan().SequenceEqual(second[t]), $"step {t}: two runs of the same batch differ");
        }

        foreach (int m in new[] { 0, 13, 31 })
        {
            var alone = Run([m]);
            for (int t = 0; t < steps; t++)
            {
                Assert.True(alone[t].AsSpan().SequenceEqual(first[t].AsSpan(m * V, V)), $"step {t}: sequence {m} decoded alone differs from its row at batch 32");
            }
        }
    }

    [Fact]
    public void LargeBatchedPrefillMatchesTheTrainingForwardAndItsLastOnlyHeadIsTheFullHeadsRows()
    {
        // 8 × 40 = 320 tokens: the products run on the kernel threads, every routed expert through the packed GEMM
        // (not the few-row path), the last-position head over the fork/join pool in column parts
        var config = ModelTestUtil.Preset("k2-nano");
        var model = new K2Model(config);
        model.InitializeWeights(23);
        int V = config.VocabSize, B = 8, T = 40;
        var rng = new Random(4);
        var tokens = Enumerable.Range(0, B * T).Select(_ => rng.Next(V)).ToArray();
        model.Forward(tokens, new int[B * T], B, T);
        var expected = model.Logits.ToArray();

        var pool = new KvBlockPool(config, blockTokens: 8, numBlocks: 2 * B * T / 8);
        var dm = new DecodeModel(config, pool, maxBatch: B);
        dm.LoadWeights(model.Parameters);
        var counts = Enumerable.Repeat(T, B).ToArray();
        SequenceCache[] NewSequences() => Enumerable.Range(0, B).Select(_ =>
        {
            var s = new SequenceCache();
            while (s.Capacity(pool) < T)
            {
                Assert.True(pool.TryAllocate(out int blk));
                s.Blocks.Add(blk);
            }

            return s;
        }).ToArray();

        var all = new float[B * T * V];
        var lastWithAll = new float[B * V];
        dm.PrefillBatch(NewSequences(), tokens, counts, lastWithAll, all);
        var lastOnly = new float[B * V];
        dm.PrefillBatch(NewSequences(), tokens, counts, lastOnly);

        double worst = 0;
        for (int i = 0; i < all.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(all[i] - expected[i]));
        }

        output.WriteLine($"prefill of {B}×{T} tokens vs training forward: max |logit diff| {worst:E2}");
        Assert.True(worst <= 1e-4, $"prefill differs from the training forward by {worst}");
        for (int b = 0; b < B; b++)
        {
            Assert.True(lastOnly.AsSpan(b * V, V).SequenceEqual(all.AsSpan(((b + 1) * T - 1) * V, V)),
                $"sequence {b}: the last-position head differs from the full head's row");
        }

        Assert.True(lastOnly.AsSpan().SequenceEqual(lastWithAll), "last logits depend on whether all logits were asked for");
    }

    /// <summary>
    /// Bf16 weights: the model rounds every weight except the routing biases to bf16 when loaded and decodes the
    /// routed experts from bf16 rows; its prefill and decode logits are exactly (bit for bit) an F32 model's given the
    /// rounded weights, at batch 32 (every decode expert product from the bf16 rows, the rest from the rounded fp32). They are not the unrounded
    /// model's logits, but close.
    /// </summary>
    [Fact]
    public void Bf16WeightsGiveExactlyTheF32LogitsOfTheRoundedWeights()
    {
        var config = ModelTestUtil.Preset("k2-nano");
        var model = new K2Model(config);
        model.InitializeWeights(8);
        var layout = new ParameterLayout(config);
        var rng = new Random(10);
        foreach (var t in layout.Tensors.Where(t => t.IsRoutingBias))
        {
            // biases far from bf16 values, large enough to steer the selection: rounding them would change routing
            var bias = t.Of(model.Parameters);
            for (int i = 0; i < bias.Length; i++)
            {
                bias[i] = (float)(rng.NextDouble() - 0.5) * 0.02f + 1e-4f / 3;
            }
        }

        var rounded = (float[])model.Parameters.Clone();
        foreach (var t in layout.Tensors.Where(t => !t.IsRoutingBias))
        {
            Bf16.Round(t.Of(rounded));
        }

        Assert.NotEqual(model.Parameters, rounded);
        int V = config.VocabSize, B = 32, prompt = 5, steps = 3;
        var prompts = Enumerable.Range(0, B * prompt).Select(_ => rng.Next(V)).ToArray();
        var next = Enumerable.Range(0, steps).Select(_ => Enumerable.Range(0, B).Select(_ => rng.Next(V)).ToArray()).ToArray();

        float[][] Run(WeightPrecision precision, float[] weights)
        {
            var pool = new KvBlockPool(config, blockTokens: 4, numBlocks: B * 2);
            var dm = new DecodeModel(config, pool, maxBatch: B, precision);
            Assert.Equal(precision, dm.Precision);
            dm.LoadWeights(weights);
            var seqs = Enumerable.Range(0, B).Select(_ => new SequenceCache()).ToArray();
            foreach (var s in seqs)
            {
                for (int i = 0; i < 2; i++)
                {
                    Assert.True(pool.TryAllocate(out int blk));
                    s.Blocks.Add(blk);
                }
            }

            var logits = new float[steps + 1][];
            logits[0] = new float[B * V];
            dm.PrefillBatch(seqs, prompts, Enumerable.Repeat(prompt, B).ToArray(), logits[0]);
            for (int t = 0; t < steps; t++)
            {
                logits[t + 1] = new float[B * V];
                dm.DecodeStep(seqs, next[t], logits[t + 1]);
            }

            return logits;
        }

        var bf16 = Run(WeightPrecision.Bf16, model.Parameters);
        var reference = Run(WeightPrecision.F32, rounded);
        var exact = Run(WeightPrecision.F32, model.Parameters);
        double worst = 0, sum = 0;
        long count = 0;
        for (int t = 0; t <= steps; t++)
        {
            Assert.True(bf16[t].AsSpan().SequenceEqual(reference[t]), $"step {t}: bf16 logits are not the rounded weights' f32 logits");
            for (int i = 0; i < bf16[t].Length; i++)
            {
                double d = Math.Abs(bf16[t][i] - exact[t][i]);
                worst = Math.Max(worst, d);
                sum += d;
                count++;
            }
        }

        // where rounding flips an expert choice the logits move by a few tenths; elsewhere by ~1e-3
        output.WriteLine($"bf16 vs unrounded weights: max |logit diff| {worst:E2}, mean {sum / count:E2}");
        Assert.InRange(worst, 1e-6, 1.0);
        Assert.InRange(sum / count, 1e-7, 0.02);
    }
}

/// <summary>
/// In the "allocation" collection (no other test runs beside it). Beside another test that holds the shared fork-join
/// pool, this test's parallel regions run inline on the calling thread (ForkJoinPool: "a call made while the pool is
/// busy"), which is not the path it measures: a CI run under load (two SFT jobs beside it) saw one step of 8,200 bytes,
/// and the test alone never did (256–352 bytes a step).
/// </summary>
[Collection("allocation")]
public class DecodeModelAllocationTests(ITestOutputHelper output)
{
    /// <summary>
    /// A warm decode step allocates no buffers on the calling thread (worker 0 of every parallel region): the state
    /// of a call lives in buffers reused from step to step. What it does allocate is a small constant outside the
    /// model's code, the same at main 0f8ed3a (256 B a step, 352 B once the attention runs on the thread pool);
    /// one buffer per layer or per token would be kilobytes.
    /// </summary>
    [Theory]
    [InlineData(WeightPrecision.F32)]
    [InlineData(WeightPrecision.Bf16)]
    public void WarmDecodeStepsAllocateNothing(WeightPrecision precision)
    {
        var config = ModelTestUtil.Preset("k2-nano");
        var model = new K2Model(config);
        model.InitializeWeights(5);
        int V = config.VocabSize, B = 4;
        var pool = new KvBlockPool(config, blockTokens: 8, numBlocks: B * 8);
        var dm = new DecodeModel(config, pool, maxBatch: B, precision);
        dm.LoadWeights(model.Parameters);
        var seqs = Enumerable.Range(0, B).Select(_ => new SequenceCache()).ToArray();
        foreach (var s in seqs)
        {
            for (int i = 0; i < 8; i++)
            {
                Assert.True(pool.TryAllocate(out int blk));
                s.Blocks.Add(blk);
            }
        }

        var last = new float[B * V];
        dm.PrefillBatch(seqs, Enumerable.Range(0, B * 5).Select(i => i % V).ToArray(), Enumerable.Repeat(5, B).ToArray(), last);
        int[] tokens = [1, 2, 3, 4];
        var logits = new float[B * V];
        var per = new List<long>();
        for (int t = 0; t < 50; t++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            dm.DecodeStep(seqs, tokens, logits);
            per.Add(GC.GetAllocatedBytesForCurrentThread() - before);
        }

        output.WriteLine("bytes allocated per step: " + string.Join(" ", per));
        Assert.InRange(per.Skip(10).Max(), 0, 512);
    }
}
