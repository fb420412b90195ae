using K2RL.Common;

namespace K2RL.Model.IO;

/// <summary>
/// The one place where model-file errors are worded: every message names the file and, where there is one,
/// the tensor or config key, so a user can find what is wrong without a debugger.
/// </summary>
internal static class CheckpointErrors
{
    public static CorruptFileException File(string path, string what) => new(path, what);

    public static CorruptFileException Tensor(string path, string tensor, string what) =>
        new(path, $"tensor \"{tensor}\": {what}");

    public static CorruptFileException Header(string path, string what) =>
        new(path, $"malformed safetensors header: {what}");

    public static CorruptFileException ConfigKey(string configPath, string key, string what) =>
        new(configPath, $"\"{key}\" {what}");

    public static string Shape(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";

    public static string Shape(IEnumerable<int> shape) => "[" + string.Join(", ", shape) + "]";
}
