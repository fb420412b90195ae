using Google.Protobuf;
using Grpc.Core;
using K2RL.CheckpointEngine;
using K2RL.Rollout;
using Wire = K2RL.Protos.V1;

namespace K2RL.Rollout.Tests;

/// <summary>The service logic in-process (the transport binding is tested in RolloutServiceIntegrationTests).</summary>
public sealed class RolloutServiceTests : IDisposable
{
    private readonly HashDecoder decoder = new(blockTokens: 4, blocks: 64);
    private readonly InMemoryPartialRolloutStore store = new();
    private readonly RolloutService service;

    public RolloutServiceTests()
    {
        service = new RolloutService(decoder, store);
    }

    public void Dispose()
    {
        decoder.StepGate?.Release(100_000);
        service.Dispose();
    }

    private static Wire.GenerateRequest Call(string id, int maxTokens, ulong seed = 1, params int[] prompt) => new()
    {
        RequestId = id,
        PromptTokenIds = { prompt.Length > 0 ? prompt : [1, 2, 3] },
        Sampling = new Wire.SamplingParams { Temperature = 0.9f, MaxTokens = maxTokens, Seed = seed, StopOnRepetition = false },
    };

    private static async Task<List<Wire.GenerateEvent>> All(IAsyncEnumerable<Wire.GenerateEvent> events, CancellationToken ct = default)
    {
        var list = new List<Wire.GenerateEvent>();
        await foreach (var e in events.WithCancellation(ct))
        {
            list.Add(e);
        }

        return list;
    }

    private static int[] Alone(int maxTokens, ulong seed = 1)
    {
        var engine = new RolloutEngine(new HashDecoder());
        var h = engine.Submit(new GenerationRequest("x", [1, 2, 3], new SamplingParams { Temperature = 0.9f, MaxTokens = maxTokens, Seed = seed, StopOnRepetition = false }));
        engine.RunUntilIdle();
        return h.Result!.TokenIds;
    }

    [Fact]
    public async Task GenerateStreamsEveryTokenThenTheFinish()
    {
        var calls = Enumerable.Range(0, 4).Select(i => All(service.GenerateAsync(Call($"r{i}", 10 + i, (ulong)i), default))).ToArray();
        var results = await Task.WhenAll(calls);
        for (int i = 0; i < 4; i++)
        {
            var events = results[i];
            var tokens = events.Where(e => e.EventCase == Wire.GenerateEvent.EventOneofCase.Token).Select(e => e.Token).ToList();
            Assert.Equal(Alone(10 + i, (ulong)i), tokens.Select(t => t.TokenId));
            Assert.Equal(Enumerable.Range(0, 10 + i), tokens.Select(t => t.Index));
            Assert.All(tokens, t => Assert.True(t.Logprob < 0 && t.Temperature == 0.9f));
            var fin = events[^1].Finished;
            Assert.Equal(Wire.FinishReason.Length, fin.FinishReason);
            Assert.True(fin.Truncated);
            Assert.Equal(10 + i, fin.NumTokens);
        }
    }

    [Fact]
    public async Task BadInputIsInvalidArgumentAndOthersContinue()
    {
        var good = All(service.GenerateAsync(Call("good", 20), default));
        var bad = Call("bad", 5, 1, 1, 999);
        var e = await Assert.ThrowsAsync<RolloutServiceException>(() => All(service.GenerateAsync(bad, default)));
        Assert.Equal(StatusCode.InvalidArgument, e.Status);
        Assert.Contains("outside the vocabulary", e.Message);
        var badTopP = Call("bad2", 5);
        badTopP.Sampling.TopP = 0;
        Assert.Equal(StatusCode.InvalidArgument, (await Assert.ThrowsAsync<RolloutServiceException>(() => All(service.GenerateAsync(badTopP, default)))).Status);
        var textWithoutTokenizer = new Wire.GenerateRequest { Prompt = "hello" };
        Assert.Equal(StatusCode.InvalidArgument, (await Assert.ThrowsAsync<RolloutServiceException>(() => All(service.GenerateAsync(textWithoutTokenizer, default)))).Status);
        Assert.Equal(Wire.FinishReason.Length, (await good)[^1].Finished.FinishReason);
    }

    [Fact]
    public async Task CancellingACallFreesItsBlocks()
    {
        // The engine may take only the decode steps the test allows, so "gone" is surely mid-generation.
        var gate = new SemaphoreSlim(2);
        decoder.StepGate = gate;
        using var cts = new CancellationTokenSource();
        int seen = 0, usedMidway = 0;
        var ex = await Record.ExceptionAsync(async () =>
        {
            await foreach (var ev in service.GenerateAsync(Call("gone", 200, 2), cts.Token))
            {
                if (++seen == 3)
                {
                    usedMidway = service.Health(new()).UsedBlocks;
                    cts.Cancel();
                    gate.Release(100_000);
                }
            }
        });
        Assert.IsAssignableFrom<OperationCanceledException>(ex);
        Assert.Equal(51, usedMidway); // ceil((3 + 200) / 4)
        Assert.Equal(Wire.FinishReason.Length, (await All(service.GenerateAsync(Call("next", 30, 5), default)))[^1].Finished.FinishReason);
        await service.DrainAsync(new(), default);
        var health = service.Health(new());
        Assert.Equal(0, health.UsedBlocks);
        Assert.Equal(0, health.Running);
        Assert.Equal(decoder.TotalBlocks, decoder.FreeBlocks);
    }

    [Fact]
    public async Task WeightsThroughTheCheckpointEngineAreCheckedAndNewTokensCarryTheirVersion()
    {
        var assembler = service.Checkpoint.Assembler;
        var wrongShape = EncodedVersion.Encode(1, new float[2], TensorSpec.Flat(2), WeightDtype.F32);
        Assert.Contains("[2]", Assert.Throws<WeightTransferException>(() => assembler.Begin(wrongShape.Manifest)).Message);
        var v3 = EncodedVersion.Encode(3, [0.5f], TensorSpec.Flat(1), WeightDtype.F32);
        assembler.Begin(v3.Manifest);
        Assert.Equal(BucketResult.Taken, assembler.Accept(3, 0, v3.Bucket(0).Span));
        Assert.NotNull(assembler.TryComplete());
        Assert.Contains("not newer", Assert.Throws<WeightTransferException>(() => assembler.Begin(v3.Manifest)).Message);
        var events = await All(service.GenerateAsync(Call("w", 5), default));
        Assert.All(events.Where(e => e.Token is not null), e => Assert.Equal(3, e.Token.WeightVersion));
        Assert.Equal(3, service.Health(new()).WeightVersion);
    }

    [Fact]
    public async Task PauseWithOffloadMovesSequencesToTheStoreAndDrainRefusesNewWork()
    {
        // Hold the engine at its first decode step so the request is surely in flight when the pause lands.
        var gate = new SemaphoreSlim(0);
        decoder.StepGate = gate;
        var events = new List<Wire.GenerateEvent>();
        var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reading = Task.Run(async () =>
        {
            await foreach (var ev in service.GenerateAsync(Call("long", 250, 3), default))
            {
                events.Add(ev);
                first.TrySetResult();
            }
        });
        await first.Task;
        var pausing = service.PauseAsync(new Wire.PauseRequest { Offload = true });
        gate.Release(); // the step in progress ends; the pause is taken at that boundary
        var paused = await pausing;
        await reading;
        gate.Release(100_000);
        Assert.InRange(events.Count, 2, 3); // the prefill's token, at most the one decode step let through, the finish
        Assert.Equal(1, paused.Offloaded);
        Assert.Equal(Wire.FinishReason.Paused, events[^1].Finished.FinishReason);
        var partial = store.TakeAll().Single();
        Assert.Equal(events.Count - 1, partial.Tokens.Count);
        Assert.Equal(0, service.Health(new()).UsedBlocks);
        Assert.True(service.Health(new()).Paused);

        service.Resume(new());
        var after = await All(service.GenerateAsync(Call("after", 4), default));
        Assert.Equal(Wire.FinishReason.Length, after[^1].Finished.FinishReason);

        await service.DrainAsync(new(), default);
        var e = await Assert.ThrowsAsync<RolloutServiceException>(() => All(service.GenerateAsync(Call("late", 4), default)));
        Assert.Equal(StatusCode.Unavailable, e.Status);
        Assert.False(service.Health(new()).Serving);
    }

    [Fact]
    public async Task TextPromptsAreTokenizedAndTokensCarryTheirText()
    {
        var tok = K2RL.Model.Tokenization.BpeTokenizer.ByteLevel();
        using var texty = new RolloutService(new HashDecoder(vocab: 256), new InMemoryPartialRolloutStore(),
            new EngineOptions { Detokenize = x => tok.Decode(x.ToArray()) }, tokenize: s => tok.Encode(s));
        var call = new Wire.GenerateRequest { Prompt = "Hi ✓", Sampling = new Wire.SamplingParams { MaxTokens = 20, Seed = 4, StopOnRepetition = false } };
        var events = await All(texty.GenerateAsync(call, default));
        var tokens = events.Where(e => e.Token is not null).Select(e => e.Token).ToList();
        Assert.Equal(20, tokens.Count);
        string streamed = string.Concat(tokens.Select(t => t.Text));
        string whole = tok.Decode(tokens.Select(t => t.TokenId).ToArray());
        Assert.StartsWith(streamed, whole);
        Assert.True(whole.Length - streamed.Length <= 1, "at most one held-back partial character at the end");

        var engine = new RolloutEngine(new HashDecoder(vocab: 256));
        var h = engine.Submit(new GenerationRequest("x", tok.Encode("Hi ✓"), new SamplingParams { MaxTokens = 20, Seed = 4, StopOnRepetition = false }));
        engine.RunUntilIdle();
        Assert.Equal(h.Result!.TokenIds, tokens.Select(t => t.TokenId));
    }

    [Fact]
    public async Task DisposingEndsRequestsInFlight()
    {
        var gate = new SemaphoreSlim(0);
        decoder.StepGate = gate;
        var events = service.GenerateAsync(Call("held", 200, 1), default).GetAsyncEnumerator();
        Assert.True(await events.MoveNextAsync()); // the prefill's token; the engine now waits at the gate
        var rest = Task.Run(async () =>
        {
            while (await events.MoveNextAsync())
            {
            }
        });
        var pausing = service.PauseAsync(new Wire.PauseRequest()); // taken at the end of the step the gate holds
        gate.Release();
        await pausing;
        service.Dispose();
        var e = await Assert.ThrowsAsync<RolloutServiceException>(() => rest);
        Assert.Equal(StatusCode.Cancelled, e.Status);
    }
}
