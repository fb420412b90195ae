using System.Globalization;
using K2RL.Common;

namespace K2RL.Model.IO;

/// <summary>
/// The one way a command names weights to read: a checkpoint directory (config.json + model.safetensors, as
/// <see cref="ModelCheckpoint"/> writes it) or a run directory (pretraining or RL: <c>LATEST</c> names the newest
/// checkpoint under <c>checkpoints/step-N</c>). A checkpoint with a MANIFEST is verified against it; a run directory
/// gives its newest checkpoint that verifies, older ones standing in (with a warning) for one that does not.
/// Every failure is a <see cref="K2Exception"/> that says which path and why, the same for every command.
/// </summary>
public static class CheckpointPath
{
    public const string LatestName = "LATEST";
    public const string CheckpointsFolder = "checkpoints";

    /// <summary>The checkpoint directory <paramref name="path"/> names (itself, or a run directory's newest good one).</summary>
    /// <param name="warn">told about each newer checkpoint of a run that was passed over, and why.</param>
    public static string Resolve(string path, Action<string>? warn = null)
    {
        if (!Directory.Exists(path))
        {
            throw new CorruptFileException(path, File.Exists(path)
                ? "is a file; give a checkpoint directory (config.json, model.safetensors) or a run directory (LATEST)"
                : "does not exist");
        }

        if (IsRun(path))
        {
            var refused = new List<string>();
            foreach (var (_, dir) in Candidates(path))
            {
                if (Problem(dir) is { } problem)
                {
                    refused.Add($"{Path.GetFileName(dir)}: {problem}");
                    warn?.Invoke($"checkpoint {dir} refused: {problem}; trying an older one");
                    continue;
                }

                return dir;
            }

            throw new CorruptFileException(path, refused.Count == 0
                ? $"{LatestName} names no checkpoint folder and {CheckpointsFolder}/ holds none"
                : "no checkpoint of this run passes its checks (" + string.Join("; ", refused) + ")");
        }

        if (File.Exists(Path.Combine(path, ModelCheckpoint.ConfigFile)))
        {
            if (Problem(path) is { } problem)
            {
                throw new CorruptFileException(path, "checkpoint refused: " + problem);
            }

            return path;
        }

        if (Directory.Exists(Path.Combine(path, CheckpointsFolder)))
        {
            throw new CorruptFileException(path, $"a run directory with no {LatestName}: no checkpoint of it was completed");
        }

        if (Directory.EnumerateFiles(path).Any())
        {
            throw CheckpointErrors.File(Path.Combine(path, ModelCheckpoint.ConfigFile),
                "missing: a checkpoint directory holds config.json and model.safetensors (or shards and model.safetensors.index.json)");
        }

        throw new CorruptFileException(path,
            $"{ModelCheckpoint.ConfigFile} and {LatestName} are missing: neither a checkpoint directory ({ModelCheckpoint.ConfigFile}, {ModelCheckpoint.WeightsFile}) nor a run directory");
    }

    /// <summary>Whether <paramref name="path"/> is a run directory (it holds LATEST).</summary>
    public static bool IsRun(string path) => File.Exists(Path.Combine(path, LatestName));

    /// <summary>
    /// A run's checkpoints to try, newest first: LATEST's target (when it is a step-N folder), then every older
    /// step-N folder under checkpoints/.
    /// </summary>
    public static List<(long Step, string Dir)> Candidates(string runRoot)
    {
        var result = new List<(long, string)>();
        string target = File.Exists(Path.Combine(runRoot, LatestName)) ? File.ReadAllText(Path.Combine(runRoot, LatestName)).Trim() : "";
        long latestStep = long.MaxValue;
        if (target.Length > 0 && ParseStep(Path.GetFileName(target)) is { } ls && Directory.Exists(Path.Combine(runRoot, target)))
        {
            latestStep = ls;
            result.Add((ls, Path.GetFullPath(Path.Combine(runRoot, target))));
        }

        string folder = Path.Combine(runRoot, CheckpointsFolder);
        if (Directory.Exists(folder))
        {
            result.AddRange(Directory.GetDirectories(folder)
                .Select(d => (Step: ParseStep(Path.GetFileName(d)), Dir: d))
                .Where(c => c.Step is { } s && s < latestStep)
                .Select(c => (c.Step!.Value, c.Dir))
                .OrderByDescending(c => c.Item1));
        }

        return result;
    }

    /// <summary>Null when the checkpoint folder is whole (its MANIFEST, where it has one, matches), else what is wrong.</summary>
    public static string? Problem(string dir)
    {
        if (!File.Exists(Path.Combine(dir, Checksums.ManifestName)))
        {
            return File.Exists(Path.Combine(dir, ModelCheckpoint.ConfigFile)) ? null : $"no {Checksums.ManifestName} and no {ModelCheckpoint.ConfigFile}";
        }

        try
        {
            Checksums.VerifyManifest(dir);
            return null;
        }
        catch (CorruptFileException e)
        {
            return e.Message;
        }
    }

    /// <summary>N of a "step-N" folder name, else null.</summary>
    public static long? ParseStep(string name) =>
        name.StartsWith("step-", StringComparison.Ordinal)
        && long.TryParse(name.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out long s) ? s : null;
}
