using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Model.IO;

namespace K2RL.Rollout;

/// <summary>Where paused rollouts wait for a later iteration: in memory, in files, or in Redis (<see cref="RedisPartialRolloutStore"/>).</summary>
public interface IPartialRolloutStore
{
    void Save(PartialRollout rollout);

    bool TryLoad(string id, out PartialRollout? rollout);

    bool Remove(string id);

    /// <summary>Ids held, in ordinal order.</summary>
    IReadOnlyList<string> Ids();
}

public static class PartialRolloutStoreExtensions
{
    /// <summary>Loads and removes every stored rollout, in id order.</summary>
    public static List<PartialRollout> TakeAll(this IPartialRolloutStore store)
    {
        var taken = new List<PartialRollout>();
        foreach (string id in store.Ids())
        {
            if (store.TryLoad(id, out var r) && r is not null)
            {
                taken.Add(r);
                store.Remove(id);
            }
        }

        return taken;
    }
}

public sealed class InMemoryPartialRolloutStore : IPartialRolloutStore
{
    private readonly ConcurrentDictionary<string, PartialRollout> items = new(StringComparer.Ordinal);

    public void Save(PartialRollout rollout) => items[rollout.Id] = rollout;

    public bool TryLoad(string id, out PartialRollout? rollout) => items.TryGetValue(id, out rollout);

    public bool Remove(string id) => items.TryRemove(id, out _);

    public IReadOnlyList<string> Ids() => items.Keys.Order(StringComparer.Ordinal).ToList();
}

/// <summary>
/// One JSON file per rollout in a directory (format "k2rl.partial_rollout", version 1), written with
/// <see cref="AtomicFile"/> (temporary file, flushed, renamed, directory flushed): a crash leaves the old file or the new one.
/// </summary>
public sealed class FilePartialRolloutStore : IPartialRolloutStore
{
    public const string Format = "k2rl.partial_rollout";
    public const int FormatVersion = 1;
    private const string Extension = ".partial.json";

    public FilePartialRolloutStore(string directory)
    {
        Directory = directory;
        System.IO.Directory.CreateDirectory(directory);
    }

    public string Directory { get; }

    public void Save(PartialRollout rollout)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(Serialize(rollout));
        AtomicFile.Write(PathOf(rollout.Id), fs => fs.Write(bytes));
    }

    public bool TryLoad(string id, out PartialRollout? rollout)
    {
        string path = PathOf(id);
        if (!File.Exists(path))
        {
            rollout = null;
            return false;
        }

        rollout = Deserialize(File.ReadAllText(path), path);
        return true;
    }

    public bool Remove(string id)
    {
        string path = PathOf(id);
        if (!File.Exists(path))
        {
            return false;
        }

        File.Delete(path);
        return true;
    }

    public IReadOnlyList<string> Ids() =>
        System.IO.Directory.EnumerateFiles(Directory, "*" + Extension)
            .Select(f => IdOf(Path.GetFileName(f)[..^Extension.Length]))
            .Order(StringComparer.Ordinal)
            .ToList();

    public static string Serialize(PartialRollout r)
    {
        var tokens = new JsonArray();
        foreach (var t in r.Tokens)
        {
            // [token, logprob, temperature, version]; floats round-trip exactly as "R" text.
            tokens.Add(new JsonArray(t.Token, t.LogProb, t.Temperature, t.WeightVersion));
        }

        var s = r.Sampling;
        var obj = new JsonObject
        {
            ["format"] = Format,
            ["version"] = FormatVersion,
            ["id"] = r.Id,
            ["prompt"] = new JsonArray(r.Prompt.Select(x => (JsonNode)x).ToArray()),
            ["seed"] = r.Seed.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["rng_state"] = r.RngState.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["pauses"] = r.Pauses,
            ["sampling"] = new JsonObject
            {
                ["temperature"] = s.Temperature,
                ["top_k"] = s.TopK,
                ["top_p"] = s.TopP,
                ["max_tokens"] = s.MaxTokens,
                ["stop_tokens"] = new JsonArray(s.StopTokens.Select(x => (JsonNode)x).ToArray()),
                ["stop_strings"] = new JsonArray(s.StopStrings.Select(x => (JsonNode)x).ToArray()),
                ["stop_on_repetition"] = s.StopOnRepetition,
            },
            ["tokens"] = tokens,
        };
        return obj.ToJsonString();
    }

    public static PartialRollout Deserialize(string json, string source)
    {
        try
        {
            var o = JsonNode.Parse(json)!.AsObject();
            if ((string?)o["format"] != Format)
            {
                throw new CorruptFileException(source, $"not a partial rollout (format is not \"{Format}\")");
            }

            int version = (int)o["version"]!;
            if (version != FormatVersion)
            {
                throw new CorruptFileException(source, $"partial rollout format version {version}; this build reads {FormatVersion}");
            }

            var s = o["sampling"]!.AsObject();
            var sampling = new SamplingParams
            {
                Temperature = (float)s["temperature"]!,
                TopK = (int)s["top_k"]!,
                TopP = (float)s["top_p"]!,
                MaxTokens = (int)s["max_tokens"]!,
                StopTokens = s["stop_tokens"]!.AsArray().Select(x => (int)x!).ToArray(),
                StopStrings = s["stop_strings"]!.AsArray().Select(x => (string)x!).ToArray(),
                StopOnRepetition = (bool)s["stop_on_repetition"]!,
            };
            ulong seed = ulong.Parse((string)o["seed"]!, System.Globalization.CultureInfo.InvariantCulture);
            return new PartialRollout
            {
                Id = (string)o["id"]!,
                Prompt = o["prompt"]!.AsArray().Select(x => (int)x!).ToArray(),
                Seed = seed,
                RngState = ulong.Parse((string)o["rng_state"]!, System.Globalization.CultureInfo.InvariantCulture),
                Pauses = (int)o["pauses"]!,
                Sampling = sampling with { Seed = seed },
                Tokens = o["tokens"]!.AsArray().Select(x =>
                {
                    var a = x!.AsArray();
                    return new SampledToken((int)a[0]!, (float)a[1]!, (float)a[2]!, (long)a[3]!);
                }).ToArray(),
            };
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException or FormatException or OverflowException)
        {
            throw new CorruptFileException(source, $"malformed partial rollout: {e.Message}");
        }
    }

    private string PathOf(string id) => Path.Combine(Directory, FileNameOf(id) + Extension);

    // Ids of [A-Za-z0-9_-] are used as they are; anything else is hex of its UTF-8, prefixed "x.".
    private static string FileNameOf(string id) =>
        id.Length > 0 && id.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-')
            ? id
            : "x." + Convert.ToHexString(Encoding.UTF8.GetBytes(id));

    private static string IdOf(string fileName) =>
        fileName.StartsWith("x.", StringComparison.Ordinal)
            ? Encoding.UTF8.GetString(Convert.FromHexString(fileName[2..]))
            : fileName;
}
