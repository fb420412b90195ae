namespace K2RL.Rollout.Workers;

/// <summary>What <c>k2rl rollout-worker</c> is told (docs/SCALE_OUT.md).</summary>
public sealed record RolloutWorkerOptions
{
    /// <summary>redis://HOST[:PORT][/DB].</summary>
    public required string Url { get; init; }

    /// <summary>"shm" or "net"; it must match the trainer's rollout transport.</summary>
    public string Weights { get; init; } = "shm";

    /// <summary>Shared-memory name; null: the one the trainer published.</summary>
    public string? ShmName { get; init; }

    /// <summary>HOST:PORT of the k2rl.v1.Checkpoint receiver (and grpc.health.v1) for net weights.</summary>
    public string? Listen { get; init; }

    /// <summary>Net weights: the port of the receiver's data lane on the --listen host (0: any free one; null: none, pushes
    /// come over gRPC). docs/CHECKPOINT_ENGINE.md, "The data lane".</summary>
    public int? DataLanePort { get; init; }

    public string Id { get; init; } = $"{Environment.MachineName}-{Environment.ProcessId}";

    public string Prefix { get; init; } = "k2rl:";

    /// <summary>How long a lease lasts without renewal (renewed every third of it while the worker runs the item).</summary>
    public TimeSpan Lease { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Items leased and run together at most.</summary>
    public int MaxBatch { get; init; } = 64;

    public TimeSpan Heartbeat { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Fault-injection tests only: wait this long after leasing, before running (a worker that dies holding leases).</summary>
    public TimeSpan Hold { get; init; }
}
