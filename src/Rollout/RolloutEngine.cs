using K2RL.CheckpointEngine;

namespace K2RL.Rollout;

/// <summary>
/// Continuous batching over an <see cref="IDecoder"/>. Each <see cref="Step"/>: take new requests, take
/// newer weights (a step boundary), drop cancelled requests, admit waiting ones while the cache budget
/// allows (prefill, first token), then one batched decode step for everyone else. A request reserves the
/// blocks for prompt + its token budget when admitted and returns them when it ends, so the budget is
/// never exceeded and nothing is preempted. Step runs on one thread; Submit, Resume and Cancel may be
/// called from any thread.
/// </summary>
public sealed partial class RolloutEngine
{
    private readonly IDecoder decoder;
    private readonly EngineOptions options;
    private readonly IWeightSource? weights;
    private WeightSet? sharedWeights;   // the version the decoder reads in place, held as a reader of its source
    private readonly object inboxGate = new();
    private readonly List<ActiveSequence> inbox = [];
    private readonly LinkedList<ActiveSequence> waiting = new();
    private readonly List<ActiveSequence> running = [];
    private readonly float[] logits;        // [MaxBatch, V]
    private readonly int[] sortScratch;     // [V]
    private readonly double[] probScratch;  // [V]
    private readonly float[] maskScratch;   // [V]
    private readonly long[] finishCounts = new long[Enum.GetValues<FinishReason>().Length];
    private ulong seedCounter;
    private int usedBlocks;

    public RolloutEngine(IDecoder decoder, EngineOptions? options = null, IWeightSource? weights = null, long initialVersion = 0)
    {
        this.decoder = decoder;
        this.options = options ?? new EngineOptions();
        this.weights = weights;
        WeightVersion = initialVersion;
        int pool = decoder.TotalBlocks;
        BlockBudget = Math.Min(this.options.CacheBlockBudget ?? pool, pool);
        if (this.options.CacheBudgetBytes is { } bytes)
        {
            long perBlock = decoder.BytesPerToken * decoder.BlockTokens;
            BlockBudget = (int)Math.Min(BlockBudget, bytes / perBlock);
        }

        if (BlockBudget <= 0)
        {
            throw new ArgumentException($"cache budget must be at least one block (pool {pool} blocks, asked {this.options.CacheBlockBudget} blocks / {this.options.CacheBudgetBytes} bytes)");
        }

        int V = decoder.VocabSize;
        logits = new float[decoder.MaxBatch * V];
        sortScratch = new int[V];
        probScratch = new double[V];
        maskScratch = new float[V];
        if (this.options.SampleableVocab is { } limit && (limit < 1 || limit > V))
        {
            throw new ArgumentException($"sampleable vocabulary {limit} must be in [1, {V}]");
        }
    }

    /// <summary>The version of the weights in use; every token sampled carries it.</summary>
    public long WeightVersion { get; private set; }

    public int BlockBudget { get; }

    public int UsedBlocks => Volatile.Read(ref usedBlocks);

    /// <summary>The most blocks held at once since construction.</summary>
    public int PeakUsedBlocks { get; private set; }

    public int RunningCount => running.Count;

    public int WaitingCount
    {
        get
        {
            lock (inboxGate)
            {
                return waiting.Count + inbox.Count;
            }
        }
    }

    public bool HasWork
    {
        get
        {
            lock (inboxGate)
            {
                return running.Count > 0 || waiting.Count > 0 || inbox.Count > 0;
            }
        }
    }

    public long TotalTokensGenerated { get; private set; }

    /// <summary>How many requests have ended for <paramref name="reason"/> since construction.</summary>
    public long FinishedCount(FinishReason reason) => Interlocked.Read(ref finishCounts[(int)reason]);

    public IDecoder Decoder => decoder;

    /// <summary>Queues a request. Bad input ends that request alone, with <see cref="FinishReason.Error"/>.</summary>
    public RequestHandle Submit(GenerationRequest request, Action<SampledToken>? onToken = null)
    {
        var handle = new RequestHandle(request.Id);
        ulong seed = request.Sampling.Seed ?? NextDefaultSeed();
        var seq = new ActiveSequence(request.Id, request.Prompt.ToArray(), request.Sampling with { Seed = seed }, handle, onToken)
        {
            Seed = seed,
            Rng = new SamplerRng(seed),
        };
        Enqueue(seq);
        return handle;
    }

    /// <summary>Continues a paused rollout: its prompt and tokens so far are prefilled, its random stream picks up where it stopped.</summary>
    public RequestHandle Resume(PartialRollout rollout, Action<SampledToken>? onToken = null)
    {
        var handle = new RequestHandle(rollout.Id);
        var seq = new ActiveSequence(rollout.Id, rollout.Prompt.ToArray(), rollout.Sampling with { Seed = rollout.Seed }, handle, onToken)
        {
            Seed = rollout.Seed,
            Rng = SamplerRng.FromState(rollout.RngState),
            Pauses = rollout.Pauses,
        };
        seq.Tokens.AddRange(rollout.Tokens);
        Enqueue(seq);
        return handle;
    }

    /// <summary>
    /// Takes the weight source's newest version now instead of at the next step (a step boundary: call it from the
    /// thread that steps). The RL job calls it right after a push, so the load is timed as part of the push.
    /// Returns whether a newer version was taken.
    /// </summary>
    public bool SyncWeights()
    {
        long before = WeightVersion;
        TakeNewerWeights();
        return WeightVersion != before;
    }

    /// <summary>Runs steps until every request has ended.</summary>
    public void RunUntilIdle()
    {
        while (HasWork)
        {
            Step();
        }
    }

    /// <summary>
    /// One RL iteration's generation: steps until all requests end or <paramref name="tokenBudget"/> tokens
    /// have been generated (checked at step boundaries, so the last step may go over by less than a batch);
    /// then every unfinished request is paused into <paramref name="store"/>.
    /// </summary>
    public IterationReport RunIteration(long tokenBudget, IPartialRolloutStore store)
    {
        long spent = 0;
        int steps = 0;
        while (HasWork && spent < tokenBudget)
        {
            spent += Step();
            steps++;
        }

        int paused = HasWork ? PauseAll(store) : 0;
        return new IterationReport(spent, steps, paused);
    }

    /// <summary>Pauses every unfinished request into <paramref name="store"/> and frees its blocks; their handles complete with <see cref="FinishReason.Paused"/>.</summary>
    public int PauseAll(IPartialRolloutStore store)
    {
        TakeInbox();
        var all = running.Concat(waiting).ToList();
        running.Clear();
        lock (inboxGate)
        {
            waiting.Clear();
        }

        foreach (var seq in all)
        {
            store.Save(new PartialRollout
            {
                Id = seq.Id,
                Prompt = seq.Prompt,
                Sampling = seq.Sampling,
                Tokens = seq.Tokens.ToArray(),
                Seed = seq.Seed,
                RngState = seq.Rng.State,
                Pauses = seq.Pauses + 1,
            });
            Finish(seq, FinishReason.Paused);
        }

        return all.Count;
    }

    private void Enqueue(ActiveSequence seq)
    {
        lock (inboxGate)
        {
            inbox.Add(seq);
        }
    }

    private ulong NextDefaultSeed()
    {
        var rng = new SamplerRng(options.SeedBase + Interlocked.Increment(ref seedCounter));
        return rng.NextUInt64();
    }
}
