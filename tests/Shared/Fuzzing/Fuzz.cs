using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common;

namespace K2RL.Tests.Shared;

/// <summary>
/// A small mutation fuzzer for the files K2RL reads from others (checkpoint directories, job and rubric YAML). Cases
/// come from a fixed seed, so a failure is reproduced by its case number; CI runs the default count and
/// <c>K2RL_FUZZ_CASES=N K2RL_FUZZ_SEED=S dotnet test --filter Fuzz</c> runs more on demand. Each case must load, or
/// fail with a <see cref="K2Exception"/> whose message names the file, within a time and an allocation bound.
/// </summary>
internal static class Fuzz
{
    public static int Cases(int ciDefault) =>
        int.TryParse(Environment.GetEnvironmentVariable("K2RL_FUZZ_CASES"), out int n) && n > 0 ? n : ciDefault;

    public static int Seed => int.TryParse(Environment.GetEnvironmentVariable("K2RL_FUZZ_SEED"), out int s) ? s : 1;

    /// <summary>
    /// The generator of case <paramref name="c"/> of a fuzz target (<paramref name="target"/>, e.g. the file fuzzed): the
    /// same in every process (HashCode.Combine is not: it is seeded per process).
    /// </summary>
    public static Random Case(int c, string target = "")
    {
        ulong h = 14695981039346656037UL;                      // FNV-1a over the target's name
        foreach (char ch in target)
        {
            h = (h ^ ch) * 1099511628211UL;
        }

        return new Random(unchecked((int)(h ^ (h >> 32)) ^ (Seed * 1_000_003) ^ (c * 7919)));
    }

    /// <summary>Values that have broken parsers: extremes, wrong types, empty and huge things.</summary>
    private static readonly string[] EvilJson =
    [
        "0", "-1", "1", "2147483647", "2147483648", "-2147483649", "9223372036854775807", "1e308", "-1e308", "1e-320", "1.5",
        "\"\"", "\"x\"", "\"12\"", "true", "false", "null", "[]", "{}", "[1,2]", "{\"a\":1}", "[[[[[[]]]]]]",
        "\"" + new string('z', 100_000) + "\"",
    ];

    private static readonly string[] EvilYaml =
    [
        "0", "-1", "2147483648", "9223372036854775808", "1e308", "-1e308", ".nan", ".inf", "-.inf", "1.5", "''", "x", "~", "null",
        "true", "[]", "{}", "[1, 2]", "{a: 1}", "[[[[[[[]]]]]]]", "!!binary aGVsbG8=", "*nope", "&a x", "\"\\u0000\"", "'\t'",
        new string('z', 100_000), "|\n  block\n  text", "- a\n- b",
    ];

    /// <summary>One structure-aware edit of a JSON text (a value replaced, a key removed, duplicated or added), or a byte-level one.</summary>
    public static string MutateJson(string text, Random rng, IReadOnlyList<(string Key, string Value)>? extraKeys = null)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false });
        }
        catch (JsonException)
        {
            return MutateText(text, rng);
        }

        var objects = new List<JsonObject>();
        Collect(root, objects);
        if (objects.Count == 0 || rng.Next(8) == 0)
        {
            return MutateText(text, rng);
        }

        var obj = objects[rng.Next(objects.Count)];
        var keys = obj.Select(p => p.Key).ToList();
        switch (rng.Next(5))
        {
            case 0 when extraKeys is { Count: > 0 }:
                var (k, v) = extraKeys[rng.Next(extraKeys.Count)];
                obj[k] = JsonNode.Parse(v);
                break;
            case 1 when keys.Count > 0:
                obj.Remove(keys[rng.Next(keys.Count)]);
                break;
            case 2 when keys.Count > 0:
                // A duplicate key: JsonObject cannot hold one, so it is written into the text.
                string dup = keys[rng.Next(keys.Count)];
                string s = root!.ToJsonString();
                int brace = s.IndexOf('{', StringComparison.Ordinal);
                return s[..(brace + 1)] + JsonSerializer.Serialize(dup) + ":" + EvilJson[rng.Next(EvilJson.Length)] + "," + s[(brace + 1)..];
            default:
                string key = keys.Count > 0 ? keys[rng.Next(keys.Count)] : "x";
                obj[key] = JsonNode.Parse(EvilJson[rng.Next(EvilJson.Length)]);
                break;
        }

        return root!.ToJsonString();
    }

    private static void Collect(JsonNode? node, List<JsonObject> into)
    {
        if (node is JsonObject o)
        {
            into.Add(o);
            foreach (var (_, child) in o)
            {
                Collect(child, into);
            }
        }
        else if (node is JsonArray a)
        {
            foreach (var child in a)
            {
                Collect(child, into);
            }
        }
    }

    /// <summary>One line-level edit of a YAML text: a value replaced, a line dropped, repeated, re-indented or swapped, or a byte-level edit.</summary>
    public static string MutateYaml(string text, Random rng)
    {
        var lines = text.Split('\n').ToList();
        if (lines.Count == 0 || rng.Next(6) == 0)
        {
            return MutateText(text, rng);
        }

        int i = rng.Next(lines.Count);
        string line = lines[i];
        switch (rng.Next(6))
        {
            case 0:
                int colon = line.IndexOf(": ", StringComparison.Ordinal);
                lines[i] = colon >= 0 ? line[..(colon + 2)] + EvilYaml[rng.Next(EvilYaml.Length)] : line + ": " + EvilYaml[rng.Next(EvilYaml.Length)];
                break;
            case 1:
                lines.RemoveAt(i);
                break;
            case 2:
                lines.Insert(i, line);
                break;
            case 3:
                lines[i] = new string(' ', rng.Next(0, 9)) + line.TrimStart();
                break;
            case 4:
                int j = rng.Next(lines.Count);
                (lines[i], lines[j]) = (lines[j], lines[i]);
                break;
            default:
                // An anchor expanded by aliases, many times over (a "billion laughs" document).
                lines.Insert(0, "bomb: &b0 [x, x, x, x, x, x, x, x, x, x]");
                for (int k = 1; k < 9; k++)
                {
                    lines.Insert(k, $"b{k}: &b{k} [" + string.Join(", ", Enumerable.Repeat($"*b{k - 1}", 10)) + "]");
                }

                // ... and used where a value is read: 10^9 leaves if a reader expands it.
                int use = 9 + rng.Next(Math.Max(1, lines.Count - 9));
                int at = use < lines.Count ? lines[use].IndexOf(": ", StringComparison.Ordinal) : -1;
                if (at >= 0)
                {
                    lines[use] = lines[use][..(at + 2)] + "*b8";
                }

                break;
        }

        return string.Join('\n', lines);
    }

    /// <summary>A byte-level edit of a text: a span cut out, the text cut short, random characters written in.</summary>
    public static string MutateText(string text, Random rng) =>
        Encoding.UTF8.GetString(MutateBytes(Encoding.UTF8.GetBytes(text), rng));

    public static byte[] MutateBytes(byte[] bytes, Random rng)
    {
        if (bytes.Length == 0)
        {
            return [(byte)rng.Next(256)];
        }

        var b = bytes.ToList();
        int at = rng.Next(b.Count);
        switch (rng.Next(4))
        {
            case 0:
                return bytes[..at];
            case 1:
                b.RemoveRange(at, Math.Min(b.Count - at, 1 + rng.Next(16)));
                return b.ToArray();
            case 2:
                b.InsertRange(at, Enumerable.Range(0, 1 + rng.Next(8)).Select(_ => (byte)rng.Next(256)));
                return b.ToArray();
            default:
                var copy = (byte[])bytes.Clone();
                for (int k = 0, n = 1 + rng.Next(4); k < n; k++)
                {
                    copy[rng.Next(copy.Length)] ^= (byte)(1 << rng.Next(8));
                }

                return copy;
        }
    }

    /// <summary>
    /// Fuzzes a YAML file: <paramref name="cases"/> cases of one to three <see cref="MutateYaml"/> edits of
    /// <paramref name="text"/>, each given to <paramref name="parse"/> as the text of <paramref name="file"/> under
    /// <see cref="Check"/>'s bounds. Returns the failures (at most 10, each with its case and text) and how many cases parsed.
    /// </summary>
    public static (List<string> Failures, int Parsed) YamlCases(string text, string file, string target, int cases, Action<string> parse)
    {
        var failures = new List<string>();
        int parsed = 0;
        for (int c = 0; c < cases && failures.Count < 10; c++)
        {
            var rng = Case(c, target);
            string edited = text;
            for (int e = 0, n = 1 + rng.Next(3); e < n; e++)
            {
                edited = MutateYaml(edited, rng);
            }

            bool ok = false;
            string? problem = Check(() =>
            {
                parse(edited);
                ok = true;
            }, file, TimeSpan.FromSeconds(10), 256L << 20);
            if (problem is not null)
            {
                failures.Add($"case {c} (seed {Seed}): {problem}\n--- the file:\n{edited[..Math.Min(edited.Length, 3000)]}");
            }

            parsed += ok ? 1 : 0;
        }

        return (failures, parsed);
    }

    /// <summary>
    /// Runs one case on its own thread: it must finish within <paramref name="timeLimit"/>, allocate at most
    /// <paramref name="allocationLimit"/> bytes, and either succeed or throw a <see cref="K2Exception"/> whose message
    /// contains <paramref name="mustName"/>. Returns null when it did, else what went wrong.
    /// </summary>
    public static string? Check(Action act, string mustName, TimeSpan timeLimit, long allocationLimit)
    {
        Exception? error = null;
        long allocated = 0;
        var thread = new Thread(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                act();
            }
            catch (Exception e)
            {
                error = e;
            }

            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }, maxStackSize: 16 << 20) { IsBackground = true };
        var clock = Stopwatch.StartNew();
        thread.Start();
        if (!thread.Join(timeLimit))
        {
            return $"still running after {timeLimit.TotalSeconds} s (a hang)";
        }

        if (allocated > allocationLimit)
        {
            return $"allocated {allocated / (1 << 20)} MiB (limit {allocationLimit / (1 << 20)} MiB) in {clock.ElapsedMilliseconds} ms";
        }

        return error switch
        {
            null => null,
            K2Exception k when k.Message.Contains(mustName, StringComparison.Ordinal) => null,
            K2Exception k => $"a K2 error that does not name {mustName}: {k.Message}",
            _ => $"unhandled {error.GetType().Name}: {error.Message}\n{error.StackTrace}",
        };
    }
}
