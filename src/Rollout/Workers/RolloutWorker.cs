using System.Diagnostics;
using K2RL.Common;
using K2RL.Common.Redis;
using K2RL.Gym;
using K2RL.Rollout.Episodes;
using Serilog;

namespace K2RL.Rollout.Workers;

/// <summary>
/// A rollout worker (docs/SCALE_OUT.md): registers in Redis with a heartbeat, leases episode work items, runs each
/// leased batch through an <see cref="EpisodeRunner"/> at the weight version the items require (waiting for the
/// checkpoint engine to deliver it), renews the leases while it runs, and acknowledges each item with its
/// <see cref="Trajectory"/> or <see cref="PausedEpisode"/>. A malformed item is dead-lettered with a log line; a Redis
/// outage is retried with backoff, each retry logged; a worker that dies loses nothing (its leases expire and the items
/// run elsewhere).
/// </summary>
public sealed class RolloutWorker : IAsyncDisposable
{
    /// <summary>A registration silent this long is removed.</summary>
    public static readonly TimeSpan ForgetAfter = TimeSpan.FromMinutes(5);

    private readonly RolloutWorkerOptions options;
    private readonly RedisWorkQueue queue;
    private readonly GymRegistry registry;
    private readonly ILogger log;
    private readonly SemaphoreSlim wake = new(0);
    private readonly Stopwatch clock = Stopwatch.StartNew();
    private WorkerSession? session;
    private string state = "starting";
    private long itemsDone, itemsRefused, itemsDead, tokens;
    private double generationS, lastSyncS, syncedAt = -1;

    private RolloutWorker(RolloutWorkerOptions options, RedisWorkQueue queue, GymRegistry registry, ILogger log)
    {
        this.options = options;
        this.queue = queue;
        this.registry = registry;
        this.log = log;
    }

    public string Id => options.Id;

    /// <summary>The checkpoint receiver's address (net weights, once the model is known), else null.</summary>
    public Uri? Address => session?.Address;

    /// <summary>Connects to Redis; an unreachable server is a <see cref="K2Exception"/> naming the URL.</summary>
    public static async Task<RolloutWorker> ConnectAsync(RolloutWorkerOptions options, GymRegistry registry, ILogger log)
    {
        if (options.Weights is not ("shm" or "net"))
        {
            throw new ConfigException($"--weights '{options.Weights}' is not shm or net");
        }

        if (options.Weights == "net" && options.Listen is null)
        {
            throw new ConfigException("--weights net needs --listen HOST:PORT (where the trainer pushes the weights)");
        }

        if (options.MaxBatch < 1 || options.Lease < TimeSpan.FromMilliseconds(100))
        {
            throw new ConfigException("the batch must be >= 1 and the lease >= 100 ms");
        }

        var redis = await RedisConnection.ConnectAsync(options.Url).ConfigureAwait(false);
        return new RolloutWorker(options, new RedisWorkQueue(redis, options.Prefix), registry, log);
    }

    /// <summary>The worker's public state now (what its heartbeat reports).</summary>
    public WorkerHeartbeat Stats()
    {
        var s = session;
        double now = clock.Elapsed.TotalSeconds;
        return new WorkerHeartbeat
        {
            Id = options.Id,
            Address = s?.Address?.ToString(),
            Pid = Environment.ProcessId,
            Epoch = s?.Epoch ?? 0,
            WeightsVersion = s?.Engine.WeightVersion ?? -1,
            ReceivedVersion = s?.ReceivedVersion ?? -1,
            State = state,
            ItemsDone = Interlocked.Read(ref itemsDone),
            ItemsRefused = Interlocked.Read(ref itemsRefused),
            ItemsDeadLettered = Interlocked.Read(ref itemsDead),
            TokensGenerated = Interlocked.Read(ref tokens),
            TokensPerSecond = generationS > 0 ? Math.Round(Interlocked.Read(ref tokens) / generationS, 1) : 0,
            LastSyncSeconds = Math.Round(lastSyncS, 4),
            SecondsSinceSync = syncedAt < 0 ? -1 : Math.Round(now - syncedAt, 3),
        };
    }

    /// <summary>Leases and runs work until <paramref name="ct"/> is cancelled; then deregisters (held leases just expire).</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        await Retry("subscribe", async () => await queue.Redis.Subscriber.SubscribeAsync(queue.Events, (_, _) => wake.Release()).ConfigureAwait(false), ct)
            .ConfigureAwait(false);
        var heartbeat = HeartbeatLoopAsync(ct);
        try
        {
            await StartSessionAsync(ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            await heartbeat.ConfigureAwait(false);
            return;
        }

        log.Information("rollout worker {Id} on {Url}: leasing work (batch {Batch}, lease {Lease} s, weights by {Weights})", options.Id,
            options.Url, options.MaxBatch, options.Lease.TotalSeconds, options.Weights);
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var (leases, requeued) = await Retry("lease", () => queue.LeaseAsync(options.Id, options.Lease, options.MaxBatch, 3 * options.Heartbeat), ct)
                    .ConfigureAwait(false);
                if (requeued > 0)
                {
                    log.Warning("{Count} expired lease(s) went back to the queue", requeued);
                }

                if (leases.Count == 0)
                {
                    state = "idle";
                    await wake.WaitAsync(TimeSpan.FromMilliseconds(200), ct).ConfigureAwait(false);
                    continue;
                }

                await RunLeasesAsync(leases, ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            log.Information("rollout worker {Id} stopping", options.Id);
        }
        finally
        {
            await heartbeat.ConfigureAwait(false);
            try
            {
                await queue.ForgetWorkerAsync(options.Id).ConfigureAwait(false);
            }
            catch (Exception e) when (RedisConnection.IsTransient(e))
            {
                log.Warning("could not deregister from Redis: {Error}", e.Message);
            }
        }
    }

    private async Task RunLeasesAsync(IReadOnlyList<WorkLease> leases, CancellationToken ct)
    {
        using var renewing = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var held = leases.ToList();
        var renew = RenewLoopAsync(held, renewing.Token);
        try
        {
            if (options.Hold > TimeSpan.Zero)
            {
                await Task.Delay(options.Hold, ct).ConfigureAwait(false);
            }

            var items = new List<(WorkLease Lease, RolloutWorkItem Item)>();
            foreach (var lease in leases)
            {
                try
                {
                    items.Add((lease, RolloutWorkItem.FromJson(lease.Payload, $"{options.Url} {queue.Items} field {lease.Id}")));
                }
                catch (CorruptFileException e)
                {
                    await DeadLetterAsync(lease, e.Message, ct).ConfigureAwait(false);
                }
            }

            foreach (var group in Batches(items))
            {
                await RunBatchAsync(group, () => held.Count == 0, ct).ConfigureAwait(false);
            }
        }
        finally
        {
            await renewing.CancelAsync().ConfigureAwait(false);
            await renew.ConfigureAwait(false);
        }
    }

    /// <summary>Items run together: the same epoch, version and temperature, no episode twice.</summary>
    private static IEnumerable<List<(WorkLease Lease, RolloutWorkItem Item)>> Batches(List<(WorkLease Lease, RolloutWorkItem Item)> items)
    {
        foreach (var g in items.GroupBy(i => (i.Item.Epoch, i.Item.WeightsVersion, i.Item.Temperature)))
        {
            var rest = g.ToList();
            while (rest.Count > 0)
            {
                var ids = new HashSet<string>(StringComparer.Ordinal);
                var batch = rest.Where(i => ids.Add(i.Item.Episode.Id)).ToList();
                rest = rest.Except(batch).ToList();
                yield return batch;
            }
        }
    }

    /// <param name="lost">true once every lease of the batch is lost (the renew loop saw them expire or the trainer start over).</param>
    private async Task RunBatchAsync(List<(WorkLease Lease, RolloutWorkItem Item)> batch, Func<bool> lost, CancellationToken ct)
    {
        var first = batch[0].Item;
        var s = await SessionAsync(first.Epoch, ct).ConfigureAwait(false);
        if (s is null)
        {
            log.Warning("dropping {Count} item(s) of epoch {Epoch}: the trainer has started over since", batch.Count, first.Epoch);
            return;
        }

        var ready = await WaitForVersionAsync(s, first.WeightsVersion, lost, ct).ConfigureAwait(false);
        if (ready is null)
        {
            log.Warning("dropping {Count} item(s) whose leases were lost while waiting for weights version {Version}", batch.Count, first.WeightsVersion);
            return;
        }

        if (ready == false)
        {
            foreach (var (lease, _) in batch)
            {
                await DeadLetterAsync(lease, $"needs weights version {first.WeightsVersion}; this worker already holds {s.Engine.WeightVersion}", ct)
                    .ConfigureAwait(false);
            }

            return;
        }

        state = "generating";
        long t0 = Stopwatch.GetTimestamp();
        EpisodeBatch result;
        try
        {
            result = await s.RunAsync(batch.Select(b => b.Item).ToList(), registry, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ArgumentException or K2Exception)
        {
            foreach (var (lease, _) in batch)
            {
                await DeadLetterAsync(lease, $"the batch could not run: {e.Message}", ct).ConfigureAwait(false);
            }

            return;
        }

        generationS += Stopwatch.GetElapsedTime(t0).TotalSeconds;
        await AckAsync(batch, result, ct).ConfigureAwait(false);
    }

    private async Task AckAsync(List<(WorkLease Lease, RolloutWorkItem Item)> batch, EpisodeBatch result, CancellationToken ct)
    {
        var finished = result.Finished.ToDictionary(t => t.Id, StringComparer.Ordinal);
        var paused = result.Paused.ToDictionary(p => p.Request.Id, StringComparer.Ordinal);
        for (int i = 0; i < batch.Count; i++)
        {
            var (lease, item) = batch[i];
            string episode = item.Episode.Id;
            var answer = new RolloutWorkResult
            {
                Id = item.Id,
                Worker = options.Id,
                WeightsVersion = session!.Engine.WeightVersion,
                EngineSteps = i == 0 ? result.EngineSteps : 0,
                Trajectory = finished.GetValueOrDefault(episode),
                Paused = paused.GetValueOrDefault(episode),
            };
            answer = answer with { TokensGenerated = Generated(answer) - Generated(item) };
            var outcome = await Retry("acknowledge", () => queue.AckAsync(lease, answer.ToJson()), ct).ConfigureAwait(false);
            if (outcome == AckOutcome.Accepted)
            {
                Interlocked.Increment(ref itemsDone);
                Interlocked.Add(ref tokens, answer.TokensGenerated);
            }
            else
            {
                Interlocked.Increment(ref itemsRefused);
                log.Warning("result for {Id} dropped: {Outcome} (the lease expired and the item went to another worker, or it is done)", item.Id, outcome);
            }
        }
    }

    /// <summary>Generated tokens in an episode so far (the in-flight turn's included).</summary>
    private static long Generated(RolloutWorkResult r) =>
        r.Trajectory?.ResponseTokens ?? (r.Paused!.Generated.Count(g => g) + (r.Paused.InFlight?.Tokens.Count ?? 0));

    private static long Generated(RolloutWorkItem item) =>
        item.Paused is { } p ? p.Generated.Count(g => g) + (p.InFlight?.Tokens.Count ?? 0) : 0;

    /// <summary>
    /// Waits for the trainer's model and builds the session of its epoch now, not at the first item: the receiver (net)
    /// or the health service (shm with --listen) serves from then on, and the first version arrives before work does.
    /// </summary>
    private async Task StartSessionAsync(CancellationToken ct)
    {
        var noted = Stopwatch.StartNew();
        while (true)
        {
            if (await Retry("read the model", () => RolloutModelInfo.LoadAsync(queue), ct).ConfigureAwait(false) is { } info
                && await SessionAsync(info.Epoch, ct).ConfigureAwait(false) is not null)
            {
                return;
            }

            if (noted.Elapsed > TimeSpan.FromSeconds(10))
            {
                log.Information("waiting for a trainer to publish its model at {Url}", options.Url);
                noted.Restart();
            }

            await Task.Delay(200, ct).ConfigureAwait(false);
        }
    }

    /// <summary>The session of <paramref name="epoch"/> (built from the model the trainer published); null when the trainer has moved past it.</summary>
    private async Task<WorkerSession?> SessionAsync(long epoch, CancellationToken ct)
    {
        if (session?.Epoch == epoch)
        {
            return session;
        }

        var noted = Stopwatch.StartNew();
        while (true)
        {
            var info = await Retry("read the model", () => RolloutModelInfo.LoadAsync(queue), ct).ConfigureAwait(false);
            if (info is not null && info.Epoch > epoch)
            {
                return null;
            }

            if (info is not null && info.Epoch == epoch)
            {
                if (session is not null)
                {
                    await session.DisposeAsync().ConfigureAwait(false);
                    session = null;
                }

                session = await WorkerSession.StartAsync(info, options, PeersAsync, log, ct).ConfigureAwait(false);
                log.Information("epoch {Epoch}: model {Layers} layers, vocab {Vocab}, weights by {Transport}", epoch, info.Config.NumHiddenLayers,
                    info.Config.VocabSize, info.Transport);
                return session;
            }

            if (noted.Elapsed > TimeSpan.FromSeconds(10))
            {
                log.Information("waiting for the trainer to publish epoch {Epoch}'s model", epoch);
                noted.Restart();
            }

            await Task.Delay(50, ct).ConfigureAwait(false);
        }
    }

    private async Task<IReadOnlyList<Uri>> PeersAsync()
    {
        var workers = await queue.WorkersAsync(ForgetAfter).ConfigureAwait(false);
        return workers.Where(w => w.Id != options.Id && w.HeartbeatAge < TimeSpan.FromSeconds(10))
            .Select(w => WorkerHeartbeat.FromJson(w.Json)).Where(h => h?.Address is not null).Select(h => new Uri(h!.Address!)).ToList();
    }

    /// <summary>Waits until the engine holds <paramref name="version"/>; false when it holds a newer one (the item is stale), null when the leases were lost meanwhile.</summary>
    private async Task<bool?> WaitForVersionAsync(WorkerSession s, long version, Func<bool> lost, CancellationToken ct)
    {
        long t0 = Stopwatch.GetTimestamp();
        var noted = Stopwatch.StartNew();
        while (true)
        {
            long before = s.Engine.WeightVersion;
            s.SyncWeights();
            if (s.Engine.WeightVersion != before)
            {
                lastSyncS = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                syncedAt = clock.Elapsed.TotalSeconds;
            }

            if (s.Engine.WeightVersion >= version)
            {
                return s.Engine.WeightVersion == version;
            }

            if (lost())
            {
                return null;
            }

            state = "waiting_for_weights";
            if (noted.Elapsed > TimeSpan.FromSeconds(10))
            {
                log.Information("waiting for weights version {Version} (holding {Held})", version, s.Engine.WeightVersion);
                noted.Restart();
            }

            await Task.Delay(2, ct).ConfigureAwait(false);
        }
    }

    private async Task DeadLetterAsync(WorkLease lease, string reason, CancellationToken ct)
    {
        log.Error("work item {Id} rejected (dead-lettered): {Reason}", lease.Id, reason);
        Interlocked.Increment(ref itemsDead);
        await Retry("dead-letter", () => queue.DeadLetterAsync(lease, reason), ct).ConfigureAwait(false);
    }

    private async Task RenewLoopAsync(List<WorkLease> held, CancellationToken ct)
    {
        try
        {
            while (true)
            {
                await Task.Delay(options.Lease / 3, ct).ConfigureAwait(false);
                try
                {
                    var kept = await queue.RenewAsync(held, options.Lease).ConfigureAwait(false);
                    for (int i = kept.Length - 1; i >= 0; i--)
                    {
                        if (!kept[i])
                        {
                            log.Warning("lease on {Id} lost (expired or the queue was cleared)", held[i].Id);
                            held.RemoveAt(i);
                        }
                    }
                }
                catch (Exception e) when (RedisConnection.IsTransient(e))
                {
                    log.Warning("renewing {Count} lease(s) failed ({Error}); retry in {Ms} ms", held.Count, e.Message.Split('\n')[0], (int)(options.Lease / 3).TotalMilliseconds);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task HeartbeatLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await queue.HeartbeatAsync(options.Id, Stats().ToJson()).ConfigureAwait(false);
            }
            catch (Exception e) when (RedisConnection.IsTransient(e))
            {
                log.Warning("heartbeat to {Url} failed ({Error}); retrying in {Seconds} s", options.Url, e.Message.Split('\n')[0], options.Heartbeat.TotalSeconds);
            }

            try
            {
                await Task.Delay(options.Heartbeat, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    private Task<T> Retry<T>(string what, Func<Task<T>> call, CancellationToken ct) =>
        queue.Redis.RetryAsync(what, _ => call(), log, giveUpAfter: null, ct);

    private Task Retry(string what, Func<Task> call, CancellationToken ct) =>
        queue.Redis.RetryAsync(what, async _ =>
        {
            await call().ConfigureAwait(false);
            return true;
        }, log, giveUpAfter: null, ct);

    public async ValueTask DisposeAsync()
    {
        if (session is not null)
        {
            await session.DisposeAsync().ConfigureAwait(false);
        }

        await queue.Redis.DisposeAsync().ConfigureAwait(false);
    }
}
