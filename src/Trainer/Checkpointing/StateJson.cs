using System.Text.Json;
using System.Text.Json.Serialization;
using K2RL.Common;

namespace K2RL.Trainer.Checkpointing;

/// <summary>How a checkpoint's job state (state.json, rl_state.json) is written and read: snake_case, indented, every field.</summary>
public static class StateJson
{
    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    public static string Serialize<T>(T state) => JsonSerializer.Serialize(state, Options);

    /// <summary>Reads a state file's text; anything unreadable is a <see cref="CorruptFileException"/> naming the file.</summary>
    public static T Deserialize<T>(string json, string path)
    {
        string name = Path.GetFileName(path);
        try
        {
            return JsonSerializer.Deserialize<T>(json, Options) ?? throw new CorruptFileException(path, $"{name} is null");
        }
        catch (JsonException e)
        {
            throw new CorruptFileException(path, $"{name}: {e.Message}");
        }
    }
}
