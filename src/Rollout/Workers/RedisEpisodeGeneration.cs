using System.Diagnostics;
using K2RL.CheckpointEngine;
using K2RL.Common;
using K2RL.Common.Redis;
using K2RL.Model;
using K2RL.Model.Inference;
using K2RL.Model.Tokenization;
using K2RL.Rollout.Episodes;
using Serilog;

namespace K2RL.Rollout.Workers;

/// <summary>Where the RL job's rollout workers are and how their weights travel (job file section <c>rollout</c>).</summary>
public sealed record RedisGenerationOptions
{
    /// <summary>redis://HOST[:PORT][/DB].</summary>
    public required string Url { get; init; }

    /// <summary>"shm" (one node: /dev/shm/k2rl-weights-NAME) or "net" (pushed to the workers' registered addresses).</summary>
    public string Transport { get; init; } = "shm";

    public string ShmName { get; init; } = "k2rl-rl";

    public string Prefix { get; init; } = "k2rl:";

    /// <summary>
    /// Redis unreachable for this long in one call fails the iteration; null (the default): never — the job waits,
    /// retrying with backoff and logging each retry, and a stop request (SIGTERM, job control) still checkpoints and exits.
    /// </summary>
    public TimeSpan? GiveUpAfter { get; init; }

    /// <summary>An item rejected or lost this many times fails the iteration (a worker that cannot read what the trainer writes).</summary>
    public int MaxRequeues { get; init; } = 5;
}

/// <summary>The trainer's view of the queue and its workers, for job status and metrics.</summary>
public sealed record RedisGenerationStats(QueueDepths Queue, IReadOnlyList<WorkerEntry> Workers, long PublishedVersion, double LastPushSeconds,
    long ItemsCollected, long ResultsRejected, long ItemsRequeued);

/// <summary>
/// The RL job's generation through rollout workers (docs/SCALE_OUT.md). At start it takes a new epoch, clears what an
/// earlier trainer left in the queue (the run directory, not Redis, is the source of truth) and publishes the model
/// config and tokenizer. Each call ships the weights at the version the work needs (shared memory or a push to the
/// registered workers) before it enqueues one item per episode, then collects one result per item: first result per
/// id, malformed results dead-lettered and run again, items lost with Redis's data enqueued again from the trainer's
/// copy. A Redis outage is retried with backoff, each retry logged: the job waits for Redis rather than losing work.
/// <para>Token budget: each item carries ⌈budget / items⌉ and a worker pauses its batch when the batch's summed share is
/// spent, so which episodes pause depends on how the items were split among workers (without a budget the
/// trajectories are exactly the embedded run's).</para>
/// </summary>
public sealed class RedisEpisodeGeneration : IEpisodeGeneration, IAsyncDisposable
{
    /// <summary>A worker whose heartbeat is younger than this counts as alive (for the fair share and for status).</summary>
    public static readonly TimeSpan LiveWindow = TimeSpan.FromSeconds(10);
    private readonly RedisGenerationOptions options;
    private readonly RedisWorkQueue queue;
    private readonly Func<string, EpisodeOptions> optionsFor;
    private readonly ILogger log;
    private readonly long parameterCount;
    private readonly IReadOnlyList<TensorSpec> tensors;
    private readonly SharedMemoryWeightPublisher? shm;
    private readonly SemaphoreSlim wake = new(0);
    private long published = -1;
    private long calls;
    private double lastPushS;
    private long collected, rejected, requeued;

    private RedisEpisodeGeneration(RedisGenerationOptions options, RedisWorkQueue queue, long epoch, ModelConfig config,
        Func<string, EpisodeOptions> optionsFor, ILogger log)
    {
        this.options = options;
        this.queue = queue;
        this.optionsFor = optionsFor;
        this.log = log;
        Epoch = epoch;
        var layout = new ParameterLayout(config);
        parameterCount = layout.TotalLength;
        tensors = layout.ToTensorSpecs();
        if (options.Transport == "shm")
        {
            // A new epoch starts the versions over: a fresh file (workers of the old one reopen on the new epoch).
            SharedMemoryWeightPublisher.Delete(options.ShmName);
            shm = new SharedMemoryWeightPublisher(options.ShmName, parameterCount, tensors);
        }
    }

    /// <summary>This trainer's epoch (Redis key {prefix}epoch, incremented at each start).</summary>
    public long Epoch { get; }

    public RedisWorkQueue Queue => queue;

    /// <summary>Connects (an unreachable server is an error naming the URL), takes an epoch, clears the queue, publishes the model.</summary>
    public static async Task<RedisEpisodeGeneration> StartAsync(RedisGenerationOptions options, ModelConfig config, BpeTokenizer tokenizer,
        WeightPrecision precision, Func<string, EpisodeOptions> optionsFor, ILogger log)
    {
        if (options.Transport is not ("shm" or "net"))
        {
            throw new ConfigException($"rollout transport '{options.Transport}' is not shm or net");
        }

        var redis = await RedisConnection.ConnectAsync(options.Url).ConfigureAwait(false);
        var queue = new RedisWorkQueue(redis, options.Prefix);
        long epoch = await redis.Database.StringIncrementAsync(RolloutModelInfo.EpochKey(queue)).ConfigureAwait(false);
        await queue.ClearAsync().ConfigureAwait(false);
        var generation = new RedisEpisodeGeneration(options, queue, epoch, config, optionsFor, log);
        await new RolloutModelInfo(epoch, config, tokenizer, precision, options.Transport, options.Transport == "shm" ? options.ShmName : null)
            .SaveAsync(queue).ConfigureAwait(false);
        await redis.Subscriber.SubscribeAsync(queue.Events, (_, _) => generation.wake.Release()).ConfigureAwait(false);
        log.Information("rollout workers through Redis at {Url} (epoch {Epoch}, weights by {Transport})", options.Url, epoch, options.Transport);
        return generation;
    }

    public async Task<EpisodeBatch> RunAsync(IReadOnlyList<EpisodeRequest> fresh, IReadOnlyList<PausedEpisode> resumed, float temperature, long tokenBudget,
        PolicyWeights weights, CancellationToken ct)
    {
        await PublishAsync(weights, ct).ConfigureAwait(false);
        long call = ++calls;
        int count = fresh.Count + resumed.Count;
        long share = tokenBudget == long.MaxValue || count == 0 ? 0 : Math.Max(1, (tokenBudget + count - 1) / count);
        var items = fresh.Select(r => Item(call, weights.Version, temperature, share, r, null))
            .Concat(resumed.Select(p => Item(call, weights.Version, temperature, share, null, p))).ToList();
        var payloads = items.ToDictionary(i => i.Id, i => i.ToJson(), StringComparer.Ordinal);
        await Retry("enqueue", () => queue.EnqueueAsync(payloads.Select(p => (p.Key, p.Value)).ToList()), ct).ConfigureAwait(false);
        var results = await CollectAsync(payloads, weights, ct).ConfigureAwait(false);
        await Retry("take results", () => queue.TakeAsync(payloads.Keys.ToList()), ct).ConfigureAwait(false);

        var inOrder = items.Select(i => results[i.Id]).ToList();
        return new EpisodeBatch(
            inOrder.Where(r => r.Trajectory is not null).Select(r => r.Trajectory!).ToList(),
            inOrder.Where(r => r.Paused is not null).Select(r => r.Paused!).ToList(),
            inOrder.Sum(r => r.TokensGenerated), inOrder.Sum(r => r.EngineSteps), resumed.Count);
    }

    /// <summary>Queue depths and the registered workers (for job status and metrics).</summary>
    public async Task<RedisGenerationStats> StatsAsync(CancellationToken ct = default)
    {
        var depths = await Retry("read queue depths", queue.DepthsAsync, ct).ConfigureAwait(false);
        var workers = await Retry("list workers", () => queue.WorkersAsync(RolloutWorker.ForgetAfter), ct).ConfigureAwait(false);
        return new RedisGenerationStats(depths, workers, Interlocked.Read(ref published), Volatile.Read(ref lastPushS),
            Interlocked.Read(ref collected), Interlocked.Read(ref rejected), Interlocked.Read(ref requeued));
    }

    private RolloutWorkItem Item(long call, long version, float temperature, long share, EpisodeRequest? request, PausedEpisode? paused)
    {
        var episode = request ?? paused!.Request;
        return new RolloutWorkItem
        {
            Id = $"e{Epoch}.c{call}.{episode.Id}",
            Epoch = Epoch,
            WeightsVersion = version,
            Temperature = temperature,
            TokenBudget = share,
            Options = optionsFor(episode.Env),
            Request = request,
            Paused = paused,
        };
    }

    /// <summary>Ships the version before any work that needs it: into shared memory, or pushed to the live workers.</summary>
    private async Task PublishAsync(PolicyWeights weights, CancellationToken ct)
    {
        if (weights.Version == Interlocked.Read(ref published))
        {
            return;
        }

        long t0 = Stopwatch.GetTimestamp();
        if (shm is not null)
        {
            shm.Publish(weights.Version, weights.Parameters);
        }
        else
        {
            await PushToStaleWorkersAsync(weights, ct).ConfigureAwait(false);
        }

        Volatile.Write(ref lastPushS, Stopwatch.GetElapsedTime(t0).TotalSeconds);
        Interlocked.Exchange(ref published, weights.Version);
        log.Debug("weights version {Version} published in {Seconds:F3} s", weights.Version, lastPushS);
    }

    /// <summary>Net transport: pushes the version to every live worker whose heartbeat shows an older one (or another epoch).</summary>
    private async Task PushToStaleWorkersAsync(PolicyWeights weights, CancellationToken ct)
    {
        var workers = await Retry("list workers", () => queue.WorkersAsync(RolloutWorker.ForgetAfter), ct).ConfigureAwait(false);
        var stale = workers.Where(w => w.HeartbeatAge < LiveWindow).Select(w => WorkerHeartbeat.FromJson(w.Json))
            .Where(h => h is { Address: not null } && (h.Epoch != Epoch || h.ReceivedVersion < weights.Version))
            .Select(h => new Uri(h!.Address!)).ToList();
        if (stale.Count == 0)
        {
            return;
        }

        using var push = new NetworkWeightPublisher(stale, parameterCount, tensors);
        await push.PublishAsync(weights.Version, weights.Parameters, ct).ConfigureAwait(false);
        foreach (string failure in push.LastFailures)
        {
            log.Warning("weights version {Version} did not reach {Failure}", weights.Version, failure);
        }
    }

    private async Task<Dictionary<string, RolloutWorkResult>> CollectAsync(Dictionary<string, string> payloads, PolicyWeights weights, CancellationToken ct)
    {
        var results = new Dictionary<string, RolloutWorkResult>(StringComparer.Ordinal);
        var attempts = new Dictionary<string, int>(StringComparer.Ordinal);
        var lastPush = Stopwatch.GetTimestamp();
        var lastNote = Stopwatch.GetTimestamp();
        while (results.Count < payloads.Count)
        {
            var outstanding = payloads.Keys.Where(id => !results.ContainsKey(id)).ToList();
            var states = await Retry("collect results", () => queue.CollectAsync(outstanding), ct).ConfigureAwait(false);
            foreach (var (id, state, raw) in states)
            {
                if (state == ItemState.Done)
                {
                    if (Read(id, raw!) is { } r)
                    {
                        results[id] = r;
                        Interlocked.Increment(ref collected);
                        continue;
                    }

                    Interlocked.Increment(ref rejected);
                    await Retry("reject a result", () => queue.RejectResultAsync(id, raw!, "unreadable result"), ct).ConfigureAwait(false);
                    Count(attempts, id, "its result was unreadable");
                }
                else if (state == ItemState.Gone)
                {
                    Count(attempts, id, "it was dead-lettered or lost with Redis's data");
                    Interlocked.Increment(ref requeued);
                    log.Warning("work item {Id} is gone from Redis (dead-lettered or lost): enqueued again", id);
                    await Retry("enqueue again", () => queue.EnqueueAsync([(id, payloads[id])]), ct).ConfigureAwait(false);
                }
            }

            if (results.Count == payloads.Count)
            {
                break;
            }

            if (shm is null && Stopwatch.GetElapsedTime(lastPush) > TimeSpan.FromSeconds(1))
            {
                lastPush = Stopwatch.GetTimestamp();
                await PushToStaleWorkersAsync(weights, ct).ConfigureAwait(false);   // late joiners and restarted workers
            }

            if (Stopwatch.GetElapsedTime(lastNote) > TimeSpan.FromSeconds(10))
            {
                lastNote = Stopwatch.GetTimestamp();
                var workers = await Retry("list workers", () => queue.WorkersAsync(RolloutWorker.ForgetAfter), ct).ConfigureAwait(false);
                log.Information("waiting for {Left} of {Total} episodes from {Workers} live rollout worker(s)", payloads.Count - results.Count,
                    payloads.Count, workers.Count(w => w.HeartbeatAge < LiveWindow));
            }

            await wake.WaitAsync(TimeSpan.FromMilliseconds(100), ct).ConfigureAwait(false);
        }

        return results;
    }

    private void Count(Dictionary<string, int> attempts, string id, string why)
    {
        int n = attempts[id] = attempts.GetValueOrDefault(id) + 1;
        if (n > options.MaxRequeues)
        {
            throw new K2Exception($"work item {id} failed {n} times ({why}); see the dead-letter list {queue.Dead} at {options.Url}");
        }
    }

    /// <summary>A result that parses and answers its item; null (logged) for anything else.</summary>
    private RolloutWorkResult? Read(string id, string raw)
    {
        try
        {
            var r = RolloutWorkResult.FromJson(raw, $"{options.Url} {queue.Results} field {id}");
            string episode = id[(id.IndexOf('.', id.IndexOf('.') + 1) + 1)..];
            if (r.Id != id || r.EpisodeId != episode)
            {
                throw new CorruptFileException($"{queue.Results} field {id}", $"answers item '{r.Id}' episode '{r.EpisodeId}'");
            }

            return r;
        }
        catch (CorruptFileException e)
        {
            log.Error("rejected a malformed result from Redis (dead-lettered; the item runs again): {Error}", e.Message);
            return null;
        }
    }

    private Task<T> Retry<T>(string what, Func<Task<T>> call, CancellationToken ct) =>
        queue.Redis.RetryAsync(what, _ => call(), log, options.GiveUpAfter, ct);

    private Task Retry(string what, Func<Task> call, CancellationToken ct) =>
        queue.Redis.RetryAsync(what, async _ =>
        {
            await call().ConfigureAwait(false);
            return true;
        }, log, options.GiveUpAfter, ct);

    public async ValueTask DisposeAsync()
    {
        shm?.Dispose();
        await queue.Redis.DisposeAsync().ConfigureAwait(false);
    }
}
