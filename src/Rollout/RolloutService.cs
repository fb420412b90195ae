using K2RL.CheckpointEngine;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Grpc.Core;
using Wire = K2RL.Protos.V1;

namespace K2RL.Rollout;

/// <summary>
/// The rollout service's logic, independent of the transport: one engine stepped on its own thread,
/// Generate as a stream of token events, pause/resume/drain, health. New weights come through the checkpoint engine's
/// network receiver (<see cref="Checkpoint"/>, served beside the rollout service on the same gRPC server): a version is
/// taken at the engine's next step boundary once it is complete and verified.
/// Failures are <see cref="RolloutServiceException"/>s carrying the gRPC status to answer with.
/// </summary>
public sealed class RolloutService : IDisposable
{
    private readonly RolloutEngine engine;
    private readonly IPartialRolloutStore store;
    private readonly Func<string, int[]>? tokenize;
    private readonly Func<IReadOnlyList<int>, string>? detokenize;
    private readonly Thread loop;
    private readonly SemaphoreSlim wake = new(0);
    private readonly ConcurrentQueue<Action> loopActions = new();
    private readonly ConcurrentDictionary<RequestHandle, byte> inFlight = new();
    private volatile bool paused;
    private volatile bool draining;
    private volatile bool stopping;
    private volatile Exception? fault;
    private int nextId;

    /// <summary>Serves <paramref name="decoder"/> (loaded with weights of <paramref name="initialVersion"/>); paused rollouts go to <paramref name="store"/>.</summary>
    /// <param name="maxBucketBytes">the largest checkpoint-engine message <see cref="Checkpoint"/> takes (the gRPC server's
    /// receive limit must allow it too).</param>
    public RolloutService(IDecoder decoder, IPartialRolloutStore store, EngineOptions? options = null, long initialVersion = 0,
        Func<string, int[]>? tokenize = null, int maxBucketBytes = Common.Rpc.GrpcServerOptions.DefaultMaxMessageSize)
    {
        var assembler = new WeightAssembler(decoder.WeightTensors, decoder.ParameterCount, slot: new WeightSlot(initialVersion));
        Checkpoint = new CheckpointNode(assembler, maxBucketBytes);
        engine = new RolloutEngine(decoder, options, assembler.Slot, initialVersion);
        this.store = store;
        this.tokenize = tokenize;
        detokenize = options?.Detokenize;
        loop = new Thread(Loop) { IsBackground = true, Name = "k2rl-rollout-engine" };
        loop.Start();
    }

    public RolloutEngine Engine => engine;

    /// <summary>The k2rl.v1.Checkpoint service that takes new weights for this engine (host it beside <see cref="RolloutGrpcService"/>).</summary>
    public CheckpointNode Checkpoint { get; }

    /// <summary>Raised (with the request id) when a Generate call ends before its sequence did (the client cancelled, the
    /// deadline passed, the stream was abandoned); the sequence is then cancelled and its blocks freed.</summary>
    public event Action<string>? CallCancelled;

    public async IAsyncEnumerable<Wire.GenerateEvent> GenerateAsync(Wire.GenerateRequest call, [EnumeratorCancellation] CancellationToken ct)
    {
        ThrowIfUnavailable();
        var request = ToRequest(call);
        if (engine.Problem(request) is { } problem)
        {
            throw new RolloutServiceException(StatusCode.InvalidArgument, problem);
        }

        var channel = Channel.CreateUnbounded<SampledToken>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var handle = engine.Submit(request, t => channel.Writer.TryWrite(t));
        inFlight[handle] = 0;
        _ = handle.Completion.ContinueWith(finished =>
        {
            channel.Writer.TryComplete();
            inFlight.TryRemove(handle, out _);
        }, TaskScheduler.Default);
        wake.Release();

        // The call's cancellation (client gone, deadline) cancels the sequence; the engine frees its blocks. The
        // registration is an early signal only: the reader below may see the cancellation first and end this
        // iterator, disposing the registration before its callback ran, so the finally block cancels as well.
        int cancelled = 0;
        void CancelOnce()
        {
            if (Interlocked.Exchange(ref cancelled, 1) == 0 && !handle.Completion.IsCompleted)
            {
                handle.Cancel();
                wake.Release();
                CallCancelled?.Invoke(handle.Id);
            }
        }

        var text = detokenize is null ? null : new TextStreamer(detokenize);
        int index = 0;
        try
        {
            using var registration = ct.Register(CancelOnce);
            await foreach (var t in channel.Reader.ReadAllAsync(ct).ConfigureAwait(false))
            {
                yield return new Wire.GenerateEvent
                {
                    Token = new Wire.TokenEvent
                    {
                        Index = index++,
                        TokenId = t.Token,
                        Logprob = t.LogProb,
                        Temperature = t.Temperature,
                        WeightVersion = t.WeightVersion,
                        Text = text?.Push(t.Token) ?? "",
                    },
                };
            }
        }
        finally
        {
            // Ending early for any reason (cancellation, a failed write to a gone client, the caller disposing
            // the stream) must not leave the sequence generating and holding cache blocks.
            CancelOnce();
        }

        var result = await handle.Completion.ConfigureAwait(false);
        switch (result.FinishReason)
        {
            case FinishReason.Error:
                // The request was checked before it was submitted, so an error now is the engine's, not the input's.
                throw new RolloutServiceException(StatusCode.Internal, result.Error ?? "request failed");
            case FinishReason.Cancelled:
                ct.ThrowIfCancellationRequested();
                throw new RolloutServiceException(StatusCode.Cancelled, "the request was cancelled");
        }

        yield return new Wire.GenerateEvent
        {
            Finished = new Wire.Finished
            {
                FinishReason = (Wire.FinishReason)(int)result.FinishReason,
                Truncated = result.Truncated,
                Degenerate = result.Degenerate,
                NumTokens = result.Tokens.Count,
                Seed = result.Seed,
            },
        };
    }

    public async Task<Wire.PauseReply> PauseAsync(Wire.PauseRequest call)
    {
        ThrowIfFaulted();
        paused = true;
        int offloaded = 0;
        if (call.Offload)
        {
            offloaded = await OnLoopAsync(() => engine.PauseAll(store)).ConfigureAwait(false);
        }
        else
        {
            await OnLoopAsync(() => 0).ConfigureAwait(false); // returns once the step in progress has ended
        }

        return new Wire.PauseReply { Offloaded = offloaded };
    }

    public Wire.ResumeReply Resume(Wire.ResumeRequest call)
    {
        ThrowIfFaulted();
        paused = false;
        wake.Release();
        return new Wire.ResumeReply();
    }

    public async Task<Wire.DrainReply> DrainAsync(Wire.DrainRequest call, CancellationToken ct)
    {
        ThrowIfFaulted();
        draining = true;
        var pending = inFlight.Keys.ToList();
        if (paused && pending.Count > 0)
        {
            throw new RolloutServiceException(StatusCode.FailedPrecondition,
                $"the engine is paused with {pending.Count} requests in flight; resume it to drain");
        }

        await Task.WhenAll(pending.Select(h => h.Completion)).WaitAsync(ct).ConfigureAwait(false);
        return new Wire.DrainReply { Completed = pending.Count };
    }

    public Wire.HealthReply Health(Wire.HealthRequest call) => new()
    {
        Serving = fault is null && !draining,
        Paused = paused,
        Draining = draining,
        WeightVersion = engine.WeightVersion,
        Running = engine.RunningCount,
        Waiting = engine.WaitingCount,
        UsedBlocks = engine.UsedBlocks,
        BlockBudget = engine.BlockBudget,
        TokensGenerated = engine.TotalTokensGenerated,
        RequestsFinished = Enum.GetValues<FinishReason>().Where(r => r != FinishReason.Cancelled).Sum(engine.FinishedCount),
        RequestsCancelled = engine.FinishedCount(FinishReason.Cancelled),
    };

    public void Dispose()
    {
        if (stopping)
        {
            return;
        }

        stopping = true;
        wake.Release();
        loop.Join();
        // The loop has stopped: end what is still in flight here, so no caller waits forever.
        foreach (var handle in inFlight.Keys)
        {
            handle.Cancel();
        }

        engine.Sweep(); // (the semaphore is not disposed: a late cancellation callback may still release it)
        Checkpoint.Dispose();
    }

    private GenerationRequest ToRequest(Wire.GenerateRequest call)
    {
        int[] prompt;
        if (call.PromptTokenIds.Count > 0)
        {
            if (call.Prompt.Length > 0)
            {
                throw new RolloutServiceException(StatusCode.InvalidArgument, "give prompt_token_ids or prompt, not both");
            }

            prompt = call.PromptTokenIds.ToArray();
        }
        else if (call.Prompt.Length > 0)
        {
            prompt = tokenize?.Invoke(call.Prompt)
                ?? throw new RolloutServiceException(StatusCode.InvalidArgument, "this engine has no tokenizer; send prompt_token_ids");
        }
        else
        {
            throw new RolloutServiceException(StatusCode.InvalidArgument, "the prompt is empty");
        }

        var s = call.Sampling ?? new Wire.SamplingParams();
        var defaults = new SamplingParams();
        var sampling = new SamplingParams
        {
            Temperature = s.HasTemperature ? s.Temperature : defaults.Temperature,
            TopK = s.TopK,
            TopP = s.HasTopP ? s.TopP : defaults.TopP,
            Seed = s.HasSeed ? s.Seed : null,
            MaxTokens = s.HasMaxTokens ? s.MaxTokens : defaults.MaxTokens,
            StopTokens = s.StopTokenIds.ToArray(),
            StopStrings = s.StopStrings.ToArray(),
            StopOnRepetition = !s.HasStopOnRepetition || s.StopOnRepetition,
        };
        string id = call.RequestId.Length > 0 ? call.RequestId : $"req-{Interlocked.Increment(ref nextId)}";
        return new GenerationRequest(id, prompt, sampling);
    }

    private void ThrowIfUnavailable()
    {
        ThrowIfFaulted();
        if (draining || stopping)
        {
            throw new RolloutServiceException(StatusCode.Unavailable, "the rollout engine is draining and takes no new requests");
        }
    }

    private void ThrowIfFaulted()
    {
        if (fault is { } f)
        {
            throw new RolloutServiceException(StatusCode.Internal, $"the rollout engine stopped: {f.Message}");
        }
    }

    private Task<T> OnLoopAsync<T>(Func<T> action)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        loopActions.Enqueue(() =>
        {
            try
            {
                done.SetResult(action());
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        });
        wake.Release();
        return done.Task;
    }

    private void Loop()
    {
        try
        {
            while (!stopping)
            {
                while (loopActions.TryDequeue(out var action))
                {
                    action();
                }

                if (!paused && engine.HasWork)
                {
                    engine.Step();
                    continue;
                }

                engine.Sweep(); // paused or idle: still end cancelled requests and free their blocks
                if (!paused && engine.HasWork)
                {
                    continue;
                }

                wake.Wait();
            }
        }
        catch (Exception e)
        {
            fault = e;
        }
    }
}
