namespace K2RL.Trainer.Rl;

/// <summary>One rollout worker as the job's coordinator last saw it.</summary>
/// <param name="Id">The worker's id (<c>k2rl rollout-worker --id</c>; hostname-pid by default).</param>
/// <param name="Address">Where it serves (its <c>--listen</c> address), or "" when it serves nothing.</param>
/// <param name="WeightVersion">The policy version it holds; -1 before its first.</param>
/// <param name="HeartbeatAge">How long ago its last heartbeat arrived.</param>
/// <param name="Healthy">Whether the coordinator counts it as alive (heartbeat within its lease).</param>
public sealed record WorkerInfo(string Id, string Address, long WeightVersion, TimeSpan HeartbeatAge, bool Healthy);

/// <summary>The workers and the depth of each work queue, by queue name.</summary>
public sealed record WorkerPoolSnapshot(IReadOnlyList<WorkerInfo> Workers, IReadOnlyDictionary<string, long> QueueDepths)
{
    public static readonly WorkerPoolSnapshot Empty = new([], new Dictionary<string, long>());
}

/// <summary>
/// What job control's status and the metrics endpoint report about rollout workers. The embedded job (generation
/// in-process) has none: <see cref="EmbeddedWorkerPool"/>. A job whose generation runs on workers through a queue
/// answers with its workers' heartbeats and the queues' lengths.
/// </summary>
public interface IWorkerPoolStatus
{
    Task<WorkerPoolSnapshot> SnapshotAsync(CancellationToken ct);
}

/// <summary>The embedded job's answer: no workers, no queues.</summary>
public sealed class EmbeddedWorkerPool : IWorkerPoolStatus
{
    public static readonly EmbeddedWorkerPool Instance = new();

    private EmbeddedWorkerPool()
    {
    }

    public Task<WorkerPoolSnapshot> SnapshotAsync(CancellationToken ct) => Task.FromResult(WorkerPoolSnapshot.Empty);
}

/// <summary>
/// A job generating through Redis (<see cref="K2RL.Rollout.Workers.RedisEpisodeGeneration"/>): the workers' heartbeats
/// (healthy while the heartbeat is younger than the generation's own <see cref="K2RL.Rollout.Workers.RedisEpisodeGeneration.LiveWindow"/>)
/// and the queue's keys' lengths.
/// </summary>
public sealed class RedisWorkerPool(K2RL.Rollout.Workers.RedisEpisodeGeneration generation) : IWorkerPoolStatus
{
    public async Task<WorkerPoolSnapshot> SnapshotAsync(CancellationToken ct)
    {
        var stats = await generation.StatsAsync(ct).ConfigureAwait(false);
        var workers = stats.Workers.Select(w =>
        {
            var beat = K2RL.Rollout.Workers.WorkerHeartbeat.FromJson(w.Json);
            return new WorkerInfo(w.Id, beat?.Address ?? "", beat?.WeightsVersion ?? -1, w.HeartbeatAge, beat is not null && w.HeartbeatAge < K2RL.Rollout.Workers.RedisEpisodeGeneration.LiveWindow);
        }).OrderBy(w => w.Id, StringComparer.Ordinal).ToList();
        var q = stats.Queue;
        return new WorkerPoolSnapshot(workers, new Dictionary<string, long>
        {
            ["pending"] = q.Pending,
            ["leased"] = q.Leased,
            ["results"] = q.Results,
            ["dead_letters"] = q.DeadLetters,
        });
    }
}
