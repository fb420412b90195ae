using System.Text.Json;
using K2RL.Common;

namespace K2RL.CheckpointEngine.Planning;

/// <summary>
/// Bandwidths K2RL measured on this machine (<c>k2rl bench broadcast --json</c>: memcpy_gb_per_s, shm_gb_per_s,
/// net_gb_per_s, in GB/s of 10^9 bytes). Each one present replaces the cluster file's figure: memcpy the host-to-device
/// and device copies, shm the intra-node link, net the inter-node link. Other fields of the file are ignored.
/// </summary>
public sealed record MeasuredBandwidths(double? MemcpyGbPerS, double? ShmGbPerS, double? NetGbPerS)
{
    public static readonly string[] Fields = ["memcpy_gb_per_s", "shm_gb_per_s", "net_gb_per_s"];

    public static MeasuredBandwidths Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"{path}: {e.Message}", e);
        }

        return Parse(text, path);
    }

    public static MeasuredBandwidths Parse(string json, string source)
    {
        JsonElement root;
        try
        {
            root = JsonDocument.Parse(json).RootElement;
        }
        catch (JsonException e)
        {
            throw new CorruptFileException(source, $"not JSON (line {e.LineNumber + 1}): {e.Message}");
        }

        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new CorruptFileException(source, "must be one JSON object (the output of `k2rl bench broadcast --json`)");
        }

        var values = Fields.Select(f => Field(root, f, source)).ToArray();
        if (values.All(v => v is null))
        {
            throw new CorruptFileException(source, $"has none of {string.Join(", ", Fields)}");
        }

        return new MeasuredBandwidths(values[0], values[1], values[2]);
    }

    private static double? Field(JsonElement root, string name, string source)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d))
        {
            throw new CorruptFileException(source, $"\"{name}\" must be a number, got {v.GetRawText()}");
        }

        return d > 0 ? d : throw new CorruptFileException(source, $"\"{name}\" must be > 0 GB/s, got {v.GetRawText()}");
    }
}
