using System.Text.Json;

namespace K2RL.Trainer.Pretraining;

/// <summary>state.json of a checkpoint: everything besides weights and moments that the next step depends on.</summary>
public sealed record TrainState
{
    public int Version { get; init; } = 1;

    /// <summary>Steps completed (the next step has this 0-based index).</summary>
    public long Step { get; init; }

    public ulong Seed { get; init; }

    public long Tokens { get; init; }

    /// <summary>Non-finite losses in a row at the time of the checkpoint.</summary>
    public int BadStepsInARow { get; init; }

    public required DataCursor Data { get; init; }

    /// <summary>The schedule position, for people reading the file (the schedule is a function of the step).</summary>
    public double LrFactor { get; init; }

    public string Optimizer { get; init; } = "";

    public string JobSha256 { get; init; } = "";

    public string ToJson() => K2RL.Trainer.Checkpointing.StateJson.Serialize(this);

    public static TrainState FromJson(string json, string path) => K2RL.Trainer.Checkpointing.StateJson.Deserialize<TrainState>(json, path);
}
