using System.Security.Cryptography;
using System.Text;

namespace K2RL.Model.IO;

/// <summary>
/// SHA-256 checksums of files and directories, and a MANIFEST in <c>sha256sum</c>'s format
/// (<c>hex, two spaces, relative path</c>, one file a line, sorted by path, '/' separators), so
/// <c>sha256sum -c MANIFEST</c> checks a run's checkpoint directory too.
/// </summary>
public static class Checksums
{
    public const string ManifestName = "MANIFEST";

    /// <summary>The lowercase hex SHA-256 of a file, read as a stream.</summary>
    public static string Sha256File(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>Every file under <paramref name="dir"/> (recursively, the manifest itself excluded) → its SHA-256.</summary>
    public static SortedDictionary<string, string> Sha256Directory(string dir, string manifestName = ManifestName)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (string file in Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(dir, file).Replace(Path.DirectorySeparatorChar, '/');
            if (relative != manifestName)
            {
                result[relative] = Sha256File(file);
            }
        }

        return result;
    }

    public static string FormatManifest(IReadOnlyDictionary<string, string> checksums)
    {
        var sb = new StringBuilder();
        foreach (var (path, hash) in checksums.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (path.Contains('\n') || path.Contains('\\'))
            {
                throw new ArgumentException($"file name {path} cannot be written to a manifest");
            }

            sb.Append(hash).Append("  ").Append(path).Append('\n');
        }

        return sb.ToString();
    }

    /// <summary>Parses a manifest; malformed lines are an error naming the line.</summary>
    public static SortedDictionary<string, string> ParseManifest(string text, string source)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        int lineNo = 0;
        foreach (string line in text.Split('\n'))
        {
            lineNo++;
            if (line.Length == 0)
            {
                continue;
            }

            if (line.Length < 67 || line[64] != ' ' || line[65] != ' ' || !line[..64].All(Uri.IsHexDigit))
            {
                throw CheckpointErrors.File(source, $"line {lineNo} is not \"<sha256>  <path>\"");
            }

            result[line[66..]] = line[..64].ToLowerInvariant();
        }

        return result;
    }

    /// <summary>Writes <c>dir/MANIFEST</c> (atomically) with the checksum of every other file in the directory.</summary>
    public static void WriteManifest(string dir, string manifestName = ManifestName) =>
        AtomicFile.WriteAllText(Path.Combine(dir, manifestName), FormatManifest(Sha256Directory(dir, manifestName)));

    /// <summary>
    /// Checks <c>dir/MANIFEST</c> against the files: a missing, changed or unlisted file is a
    /// <see cref="K2RL.Common.CorruptFileException"/> naming it.
    /// </summary>
    public static void VerifyManifest(string dir, string manifestName = ManifestName)
    {
        string manifestPath = Path.Combine(dir, manifestName);
        if (!File.Exists(manifestPath))
        {
            throw CheckpointErrors.File(manifestPath, "file not found");
        }

        var expected = ParseManifest(File.ReadAllText(manifestPath), manifestPath);
        var actual = Sha256Directory(dir, manifestName);
        foreach (var (path, hash) in expected)
        {
            if (!actual.TryGetValue(path, out string? got))
            {
                throw CheckpointErrors.File(Path.Combine(dir, path), $"listed in {manifestName} but missing");
            }

            if (got != hash)
            {
                throw CheckpointErrors.File(Path.Combine(dir, path), $"its SHA-256 checksum {got} does not match {manifestName} ({hash})");
            }
        }

        foreach (string path in actual.Keys.Where(p => !expected.ContainsKey(p)))
        {
            throw CheckpointErrors.File(Path.Combine(dir, path), $"not listed in {manifestName}");
        }
    }
}
