using System.Globalization;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace K2RL.Common.Config;

/// <summary>
/// Typed reads from one YAML mapping, naming the file, key and line in every error. Each key read is marked;
/// <see cref="RejectUnknown"/> then refuses any key the schema did not ask for. The typed reader for flat schemas
/// (job files); <see cref="Yaml"/> beside it holds the node helpers for nested documents (gym configs, rubrics).
/// </summary>
public sealed class YamlReader
{
    private readonly YamlMappingNode map;
    private readonly HashSet<string> seen = new(StringComparer.Ordinal);

    private YamlReader(YamlMappingNode map, string file, string prefix)
    {
        this.map = map;
        File = file;
        Prefix = prefix;
    }

    public string File { get; }

    public string Prefix { get; }

    public static YamlReader Parse(string text, string file)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new ConfigException($"{file}:{e.Start.Line}: malformed YAML: {e.Message}", e);
        }

        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root)
        {
            throw new ConfigException($"{file}:1: the job file must be a YAML mapping of keys to values");
        }

        return new YamlReader(root, file, "");
    }

    private string Where(YamlNode node, string key) => $"{File}:{node.Start.Line}: \"{Prefix}{key}\"";

    private YamlNode? Get(string key)
    {
        seen.Add(key);
        foreach (var (k, v) in map.Children)
        {
            if (k is YamlScalarNode s && s.Value == key)
            {
                return v is YamlScalarNode { Value: null or "" or "~" or "null", Style: ScalarStyle.Plain } ? null : v;
            }
        }

        return null;
    }

    private string Scalar(YamlNode node, string key, string what)
    {
        if (node is YamlScalarNode { Value: { } v })
        {
            return v;
        }

        throw new ConfigException($"{Where(node, key)} must be {what}, got a {(node is YamlMappingNode ? "mapping" : "sequence")}");
    }

    public int Int(string key, int fallback, int min = int.MinValue, int max = int.MaxValue)
    {
        var node = Get(key);
        if (node is null)
        {
            return fallback;
        }

        string s = Scalar(node, key, "an integer");
        if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v))
        {
            throw new ConfigException($"{Where(node, key)} must be an integer, got \"{s}\"");
        }

        if (v < min || v > max)
        {
            throw new ConfigException($"{Where(node, key)} must be {Range(min, max)}, got {v}");
        }

        return v;
    }

    public long Long(string key, long fallback)
    {
        var node = Get(key);
        if (node is null)
        {
            return fallback;
        }

        string s = Scalar(node, key, "an integer");
        return long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v)
            ? v
            : throw new ConfigException($"{Where(node, key)} must be an integer, got \"{s}\"");
    }

    public float Float(string key, float fallback, double min = double.NegativeInfinity, double max = double.PositiveInfinity,
        bool minExclusive = false)
    {
        var node = Get(key);
        if (node is null)
        {
            return fallback;
        }

        string s = Scalar(node, key, "a number");
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v))
        {
            throw new ConfigException($"{Where(node, key)} must be a number, got \"{s}\"");
        }

        if (v < min || v > max || (minExclusive && v == min))
        {
            string lo = minExclusive ? $"> {min.ToString(CultureInfo.InvariantCulture)}" : $">= {min.ToString(CultureInfo.InvariantCulture)}";
            string range = double.IsPositiveInfinity(max) ? lo : $"{lo} and <= {max.ToString(CultureInfo.InvariantCulture)}";
            throw new ConfigException($"{Where(node, key)} must be {range}, got {s}");
        }

        return (float)v;
    }

    public bool Bool(string key, bool fallback)
    {
        var node = Get(key);
        if (node is null)
        {
            return fallback;
        }

        string s = Scalar(node, key, "true or false");
        return s switch
        {
            "true" or "True" or "yes" => true,
            "false" or "False" or "no" => false,
            _ => throw new ConfigException($"{Where(node, key)} must be true or false, got \"{s}\""),
        };
    }

    public string Str(string key, string fallback, params string[] allowed)
    {
        var node = Get(key);
        if (node is null)
        {
            return fallback;
        }

        string s = Scalar(node, key, "a string");
        if (allowed.Length > 0 && !allowed.Contains(s))
        {
            throw new ConfigException($"{Where(node, key)} must be one of {string.Join(", ", allowed)}; got \"{s}\"");
        }

        return s;
    }

    public string? OptionalStr(string key)
    {
        var node = Get(key);
        return node is null ? null : Scalar(node, key, "a string");
    }

    public IReadOnlyList<string> StrList(string key, IReadOnlyList<string> fallback, params string[] allowed)
    {
        var node = Get(key);
        if (node is null)
        {
            return fallback;
        }

        if (node is not YamlSequenceNode seq)
        {
            throw new ConfigException($"{Where(node, key)} must be a list");
        }

        var list = new List<string>();
        foreach (var item in seq.Children)
        {
            string s = Scalar(item, key, "a list of strings");
            if (allowed.Length > 0 && !allowed.Contains(s))
            {
                throw new ConfigException($"{Where(item, key)} entries must be among {string.Join(", ", allowed)}; got \"{s}\"");
            }

            list.Add(s);
        }

        return list;
    }

    /// <summary>A nested mapping; an empty reader when the key is absent.</summary>
    public YamlReader Section(string key)
    {
        var node = Get(key);
        if (node is null)
        {
            return new YamlReader(new YamlMappingNode(), File, Prefix + key + ".");
        }

        if (node is not YamlMappingNode m)
        {
            throw new ConfigException($"{Where(node, key)} must be a mapping of keys to values");
        }

        return new YamlReader(m, File, Prefix + key + ".");
    }

    /// <summary>Every key of this mapping with its line (all marked as read).</summary>
    public List<(string Key, int Line)> Keys()
    {
        var keys = new List<(string, int)>();
        foreach (var (k, _) in map.Children)
        {
            string name = (k as YamlScalarNode)?.Value ?? "";
            seen.Add(name);
            keys.Add((name, (int)k.Start.Line));
        }

        return keys;
    }

    public int LineOf(string key)
    {
        foreach (var (k, _) in map.Children)
        {
            if (k is YamlScalarNode s && s.Value == key)
            {
                return (int)k.Start.Line;
            }
        }

        return (int)map.Start.Line;
    }

    /// <summary>Throws on the first key that no read asked for (a typo must not be silently ignored).</summary>
    public void RejectUnknown()
    {
        foreach (var (k, _) in map.Children)
        {
            string name = (k as YamlScalarNode)?.Value ?? "?";
            if (!seen.Contains(name))
            {
                throw new ConfigException(
                    $"{File}:{k.Start.Line}: unknown key \"{Prefix}{name}\" (known here: {string.Join(", ", seen.Order(StringComparer.Ordinal))})");
            }
        }
    }

    private static string Range(int min, int max) =>
        max == int.MaxValue ? $">= {min}" : min == int.MinValue ? $"<= {max}" : $"in [{min}, {max}]";
}
