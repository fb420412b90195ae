using System.Text.Json;
using System.Text.Json.Serialization;

namespace K2RL.Rollout.Workers;

/// <summary>
/// A rollout worker's public state: what it reports with every heartbeat (Redis hash {prefix}workers, JSON) and what
/// its stats snapshot returns. Rates are over the worker's generation time.
/// </summary>
public sealed record WorkerHeartbeat
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public required string Id { get; init; }

    /// <summary>The worker's k2rl.v1.Checkpoint receiver (net weights), or null.</summary>
    public string? Address { get; init; }

    public int Pid { get; init; }

    /// <summary>The trainer epoch whose weights it holds (0: none yet).</summary>
    public long Epoch { get; init; }

    /// <summary>The weight version its engine holds (−1: none yet).</summary>
    public long WeightsVersion { get; init; } = -1;

    /// <summary>The newest version its checkpoint-engine receiver holds (the engine takes it when work needs it).</summary>
    public long ReceivedVersion { get; init; } = -1;

    /// <summary>"starting", "idle", "waiting_for_weights", "generating".</summary>
    public string State { get; init; } = "starting";

    public long ItemsDone { get; init; }

    public long ItemsRefused { get; init; }

    public long ItemsDeadLettered { get; init; }

    public long TokensGenerated { get; init; }

    public double TokensPerSecond { get; init; }

    /// <summary>Seconds from a version's first need to the engine holding it, for the last version taken.</summary>
    public double LastSyncSeconds { get; init; }

    /// <summary>Seconds since the last version was taken (−1: none yet).</summary>
    public double SecondsSinceSync { get; init; } = -1;

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>The heartbeat's JSON, or null when it is not one (a foreign or malformed entry).</summary>
    public static WorkerHeartbeat? FromJson(string json)
    {
        try
        {
            return JsonSerializer.Deserialize<WorkerHeartbeat>(json, Json);
        }
        catch (Exception e) when (e is JsonException or NotSupportedException)
        {
            return null;
        }
    }

    [JsonIgnore]
    public bool HasWeights => WeightsVersion >= 0;
}
