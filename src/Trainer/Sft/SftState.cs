using K2RL.Trainer.Checkpointing;

namespace K2RL.Trainer.Sft;

/// <summary>sft_state.json of an SFT checkpoint: everything besides weights and moments that the next step depends on.</summary>
public sealed record SftState
{
    public int Format { get; init; } = 1;

    /// <summary>Steps completed (the next step has this 0-based index).</summary>
    public long Step { get; init; }

    public ulong Seed { get; init; }

    /// <summary>The data stream: the next record's epoch and position in that epoch's order.</summary>
    public required SftCursor Data { get; init; }

    /// <summary>Input tokens (padding excluded) and trained (assistant) tokens so far.</summary>
    public long Tokens { get; init; }

    public long TrainedTokens { get; init; }

    public int BadStepsInARow { get; init; }

    /// <summary>The training records the stream was cut from: a resume with another count warns (the stream differs).</summary>
    public int TrainRecords { get; init; }

    /// <summary>The schedule position, for people reading the file (the schedule is a function of the step).</summary>
    public double LrFactor { get; init; }

    public string BaseCheckpoint { get; init; } = "";

    public string JobSha256 { get; init; } = "";

    public string ToJson() => StateJson.Serialize(this);

    public static SftState FromJson(string json, string path)
    {
        var s = StateJson.Deserialize<SftState>(json, path);
        return s.Format == 1 ? s : throw new K2RL.Common.CorruptFileException(path, $"sft_state.json format {s.Format} is not 1");
    }
}
