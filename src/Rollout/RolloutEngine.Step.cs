namespace K2RL.Rollout;

public sealed partial class RolloutEngine
{
    /// <summary>One scheduling step; returns how many tokens it sampled.</summary>
    public int Step()
    {
        TakeInbox();
        TakeNewerWeights();
        DropCancelled();
        var decoding = running.ToList(); // those admitted below get their first token from prefill
        int sampled = Admit();
        sampled += Decode(decoding);
        TotalTokensGenerated += sampled;
        return sampled;
    }

    /// <summary>Takes new requests and ends cancelled ones (freeing their blocks) without stepping: for a paused engine.</summary>
    public void Sweep()
    {
        TakeInbox();
        DropCancelled();
    }

    private void TakeInbox()
    {
        List<ActiveSequence> fresh;
        lock (inboxGate)
        {
            if (inbox.Count == 0)
            {
                return;
            }

            fresh = [.. inbox];
            inbox.Clear();
        }

        foreach (var seq in fresh)
        {
            string? problem = Validate(seq);
            if (problem is not null)
            {
                seq.Error = problem;
                Finish(seq, FinishReason.Error);
                continue;
            }

            waiting.AddLast(seq);
        }
    }

    private string? Validate(ActiveSequence seq) => Problem(seq.Prompt, seq.Tokens, seq.Sampling);

    /// <summary>What is wrong with a request for this engine (the error it would end with), or null.</summary>
    public string? Problem(GenerationRequest request) => Problem(request.Prompt, [], request.Sampling);

    private string? Problem(IReadOnlyList<int> prompt, IReadOnlyList<SampledToken> tokens, SamplingParams sampling)
    {
        int V = decoder.VocabSize;
        if (sampling.Problem(V) is { } p)
        {
            return p;
        }

        if (prompt.Count == 0)
        {
            return "the prompt is empty";
        }

        int total = prompt.Count + tokens.Count;
        if (total >= decoder.MaxContext)
        {
            return $"prompt of {total} tokens does not fit the context of {decoder.MaxContext} (it must leave room for one generated token)";
        }

        for (int i = 0; i < prompt.Count; i++)
        {
            if ((uint)prompt[i] >= (uint)V)
            {
                return $"prompt token {i} is {prompt[i]}, outside the vocabulary [0, {V})";
            }
        }

        foreach (var t in tokens)
        {
            if ((uint)t.Token >= (uint)V)
            {
                return $"resumed token {t.Token} is outside the vocabulary [0, {V})";
            }
        }

        if (sampling.StopStrings.Count > 0 && options.Detokenize is null)
        {
            return "stop strings need a tokenizer, and this engine has none";
        }

        int need = BlocksNeeded(prompt.Count, sampling.MaxTokens);
        if (need > BlockBudget)
        {
            return $"the request needs {need} cache blocks (prompt {prompt.Count} + up to {sampling.MaxTokens} tokens) but the cache budget is {BlockBudget} blocks";
        }

        return null;
    }

    private int BlocksNeeded(ActiveSequence seq) => BlocksNeeded(seq.Prompt.Length, seq.Sampling.MaxTokens);

    private int BlocksNeeded(int promptLength, int maxTokens)
    {
        long tokens = Math.Min((long)promptLength + maxTokens, decoder.MaxContext);
        return (int)((tokens + decoder.BlockTokens - 1) / decoder.BlockTokens);
    }

    private void TakeNewerWeights()
    {
        if (weights is not null && weights.TryGetNewer(WeightVersion, out var w) && w is not null)
        {
            // Shared where the decoder can read the version in place (the swap is then a reference change): the engine
            // holds it as a reader, so the checkpoint engine reuses the buffer only after the next swap releases it.
            // Otherwise copied, and released at once.
            bool shared;
            try
            {
                shared = decoder.TryShareWeights(w.Parameters);
                if (!shared)
                {
                    decoder.LoadWeights(w.Parameters);
                }
            }
            catch
            {
                weights.Release(w);
                throw;
            }

            if (!shared)
            {
                weights.Release(w);   // copied: the checkpoint engine may reuse the buffer
            }

            if (sharedWeights is { } previous)
            {
                weights.Release(previous);   // no longer read
            }

            sharedWeights = shared ? w : null;

            WeightVersion = w.Version;
            if (options.RecomputeCacheOnNewWeights)
            {
                RecomputeCaches();
            }
        }
    }

    // The cache of a sequence in flight was computed by the old weights; rebuild it under the new ones so that
    // the next tokens' log-probabilities are the new policy's own. Everything but the last sampled token
    // (which the next decode step feeds) is prefilled again, all sequences in one batched pass, into the blocks
    // each sequence already holds.
    private void RecomputeCaches()
    {
        var batch = running.ToList();
        if (batch.Count == 0)
        {
            return;
        }

        var errors = PrefillAll(batch, dropLast: true);
        for (int b = 0; b < batch.Count; b++)
        {
            if (errors[b] is { } e)
            {
                running.Remove(batch[b]);
                batch[b].Error = $"recomputing the cache under weight version {WeightVersion} failed: {e}";
                Finish(batch[b], FinishReason.Error);
            }
        }
    }

    /// <summary>
    /// Prefills each sequence's context (prompt and sampled tokens, without the last when dropLast) from an empty
    /// cache in one batched pass; sequence b's last logits land in row b of <see cref="logits"/>. Returns each
    /// sequence's error (null where it succeeded): when the batched pass fails, each sequence is prefilled alone so
    /// that only the ones at fault end.
    /// </summary>
    private string?[] PrefillAll(List<ActiveSequence> batch, bool dropLast)
    {
        int B = batch.Count, V = decoder.VocabSize;
        var counts = new int[B];
        var caches = new IDecoderSequence[B];
        int total = 0;
        for (int b = 0; b < B; b++)
        {
            counts[b] = batch[b].Prompt.Length + batch[b].Tokens.Count - (dropLast ? 1 : 0);
            caches[b] = batch[b].Cache!;
            total += counts[b];
        }

        var tokens = new int[total];
        for (int b = 0, at = 0; b < B; at += counts[b], b++)
        {
            var seq = batch[b];
            seq.Prompt.AsSpan(0, Math.Min(seq.Prompt.Length, counts[b])).CopyTo(tokens.AsSpan(at));
            for (int i = 0; seq.Prompt.Length + i < counts[b]; i++)
            {
                tokens[at + seq.Prompt.Length + i] = seq.Tokens[i].Token;
            }
        }

        var errors = new string?[B];
        try
        {
            foreach (var c in caches)
            {
                c.Length = 0;
            }

            decoder.PrefillBatch(caches, tokens, counts, logits.AsSpan(0, B * V));
            return errors;
        }
        catch (Exception e) when (e is not OutOfMemoryException && B == 1)
        {
            errors[0] = e.Message;
            return errors;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // fall through: find which sequences fail on their own
        }

        for (int b = 0, at = 0; b < B; at += counts[b], b++)
        {
            try
            {
                caches[b].Length = 0;
                decoder.Prefill(caches[b], tokens.AsSpan(at, counts[b]), logits.AsSpan(b * V, V));
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                errors[b] = e.Message;
            }
        }

        return errors;
    }

    private void DropCancelled()
    {
        for (int i = running.Count - 1; i >= 0; i--)
        {
            if (running[i].Handle.IsCancellationRequested)
            {
                var seq = running[i];
                running.RemoveAt(i);
                Finish(seq, FinishReason.Cancelled);
            }
        }

        for (var node = waiting.First; node is not null;)
        {
            var next = node.Next;
            if (node.Value.Handle.IsCancellationRequested)
            {
                waiting.Remove(node);
                Finish(node.Value, FinishReason.Cancelled);
            }

            node = next;
        }
    }

    /// <summary>
    /// First come, first served: the head of the queue waits until its blocks fit, and so do those behind it.
    /// All sequences admitted in one step are prefilled together in one batched pass.
    /// </summary>
    private int Admit()
    {
        var admitted = new List<ActiveSequence>();
        while (waiting.First is { } node && running.Count + admitted.Count < decoder.MaxBatch)
        {
            var seq = node.Value;
            int need = BlocksNeeded(seq);
            if (usedBlocks + need > BlockBudget || decoder.FreeBlocks < need)
            {
                break;
            }

            waiting.RemoveFirst();
            seq.Cache = decoder.NewSequence();
            for (int b = 0; b < need; b++)
            {
                if (!decoder.TryAllocateBlock(out int block))
                {
                    throw new InvalidOperationException($"cache pool refused block {b} of {need} with {decoder.FreeBlocks} free");
                }

                seq.Cache.Blocks.Add(block);
            }

            Interlocked.Add(ref usedBlocks, need);
            PeakUsedBlocks = Math.Max(PeakUsedBlocks, usedBlocks);
            admitted.Add(seq);
        }

        if (admitted.Count == 0)
        {
            return 0;
        }

        int V = decoder.VocabSize, sampled = 0;
        var errors = PrefillAll(admitted, dropLast: false);
        for (int b = 0; b < admitted.Count; b++)
        {
            var seq = admitted[b];
            if (errors[b] is { } e)
            {
                seq.Error = $"prefill failed: {e}";
                Finish(seq, FinishReason.Error);
                continue;
            }

            running.Add(seq);
            SampleAndCheck(seq, logits.AsSpan(b * V, V));
            sampled++;
        }

        return sampled;
    }

    private int Decode(List<ActiveSequence> batch)
    {
        batch.RemoveAll(s => s.Finished);
        if (batch.Count == 0)
        {
            return 0;
        }

        int V = decoder.VocabSize;
        var caches = new IDecoderSequence[batch.Count];
        var tokens = new int[batch.Count];
        for (int b = 0; b < batch.Count; b++)
        {
            caches[b] = batch[b].Cache!;
            tokens[b] = batch[b].Tokens[^1].Token;
        }

        var failed = new string?[batch.Count];
        try
        {
            decoder.DecodeStep(caches, tokens, logits.AsSpan(0, batch.Count * V));
        }
        catch (Exception e) when (e is not OutOfMemoryException && batch.Count == 1)
        {
            failed[0] = e.Message;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The failed step appended nothing (the IDecoder contract); find which sequences fail on their own.
            // Rows are computed independently, so each one stepped alone gets the row the batched step would have
            // given it.
            for (int b = 0; b < batch.Count; b++)
            {
                try
                {
                    decoder.DecodeStep([caches[b]], tokens.AsSpan(b, 1), logits.AsSpan(b * V, V));
                }
                catch (Exception alone) when (alone is not OutOfMemoryException)
                {
                    failed[b] = alone.Message;
                }
            }
        }

        int decoded = 0;
        for (int b = 0; b < batch.Count; b++)
        {
            var seq = batch[b];
            if (failed[b] is { } message)
            {
                running.Remove(seq);
                seq.Error = $"decode step failed: {message}";
                Finish(seq, FinishReason.Error);
                continue;
            }

            SampleAndCheck(seq, logits.AsSpan(b * V, V));
            decoded++;
        }

        return decoded;
    }

    private void SampleAndCheck(ActiveSequence seq, ReadOnlySpan<float> row)
    {
        var rng = seq.Rng;
        var candidates = row;
        if (options.SampleableVocab is { } limit && limit < row.Length)
        {
            var masked = maskScratch.AsSpan(0, row.Length);
            row.CopyTo(masked);
            masked[limit..].Fill(float.NegativeInfinity);
            candidates = masked;
        }

        int token = Sampler.Sample(candidates, seq.Sampling, ref rng, sortScratch, probScratch);
        seq.Rng = rng;
        var sampled = new SampledToken(token, Sampler.LogProb(row, token), seq.Sampling.Temperature, WeightVersion);
        seq.Tokens.Add(sampled);
        if (seq.OnToken is { } onToken)
        {
            try
            {
                onToken(sampled);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                running.Remove(seq);
                seq.Error = $"token callback failed: {e.Message}";
                Finish(seq, FinishReason.Error);
                return;
            }
        }

        var reason = FinishCheck(seq);
        if (reason != FinishReason.None)
        {
            running.Remove(seq);
            Finish(seq, reason);
        }
    }

    private FinishReason FinishCheck(ActiveSequence seq)
    {
        var s = seq.Sampling;
        int token = seq.Tokens[^1].Token;
        foreach (int stop in s.StopTokens)
        {
            if (stop == token)
            {
                return FinishReason.StopToken;
            }
        }

        if (s.StopStrings.Count > 0 && HitsStopString(seq))
        {
            return FinishReason.StopString;
        }

        if (seq.Tokens.Count >= s.MaxTokens)
        {
            return FinishReason.Length;
        }

        if (seq.Prompt.Length + seq.Tokens.Count >= decoder.MaxContext)
        {
            return FinishReason.ContextFull;
        }

        if (s.StopOnRepetition && options.Repetition.Period(seq.Tokens) > 0)
        {
            return FinishReason.Degenerate;
        }

        return FinishReason.None;
    }

    // Every token decodes to at least one byte and a UTF-16 char is at most 3 UTF-8 bytes, so a stop string
    // completed by the newest token lies within the last 3 × (longest stop string) + 1 tokens.
    private bool HitsStopString(ActiveSequence seq)
    {
        int longest = seq.Sampling.StopStrings.Max(x => x.Length) * 3 + 1;
        int from = Math.Max(0, seq.Tokens.Count - longest);
        var tail = new int[seq.Tokens.Count - from];
        for (int i = 0; i < tail.Length; i++)
        {
            tail[i] = seq.Tokens[from + i].Token;
        }

        string text = options.Detokenize!(tail);
        foreach (string stop in seq.Sampling.StopStrings)
        {
            if (text.Contains(stop, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }

    private void Finish(ActiveSequence seq, FinishReason reason)
    {
        seq.Finished = true;
        Interlocked.Increment(ref finishCounts[(int)reason]);
        int[]? routing = null;
        if (seq.Cache is { } cache)
        {
            routing = decoder.RoutingOf(cache, seq.Prompt.Length + seq.Tokens.Count);
            foreach (int block in cache.Blocks)
            {
                decoder.FreeBlock(block);
            }

            Interlocked.Add(ref usedBlocks, -cache.Blocks.Count);
            cache.Blocks.Clear();
            cache.Length = 0;
            seq.Cache = null;
        }

        seq.Handle.Complete(new GenerationResult
        {
            Id = seq.Id,
            Prompt = seq.Prompt,
            Tokens = seq.Tokens.ToArray(),
            FinishReason = reason,
            Seed = seq.Seed,
            Error = seq.Error,
            Routing = routing,
        });
    }

    private sealed class ActiveSequence(string id, int[] prompt, SamplingParams sampling, RequestHandle handle, Action<SampledToken>? onToken)
    {
        public string Id { get; } = id;

        public int[] Prompt { get; } = prompt;

        public SamplingParams Sampling { get; } = sampling;

        public RequestHandle Handle { get; } = handle;

        public Action<SampledToken>? OnToken { get; } = onToken;

        public List<SampledToken> Tokens { get; } = [];

        public SamplerRng Rng { get; set; }

        public ulong Seed { get; init; }

        public int Pauses { get; init; }

        public IDecoderSequence? Cache { get; set; }

        public bool Finished { get; set; }

        public string? Error { get; set; }
    }
}
