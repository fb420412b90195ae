using System.Globalization;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace K2RL.Common.Config;

/// <summary>
/// K2RL's one YAML reader: typed reads from one YAML mapping (job files, the gym section, rubric files), naming
/// <c>file:line:column</c> and the key in every error. Each key read is marked; <see cref="RejectUnknown"/> then
/// refuses any key the schema did not ask for. Nested mappings are <see cref="Section"/>s, lists of mappings
/// <see cref="MappingList"/>s; an empty or <c>~</c> value reads as absent.
/// </summary>
public sealed class YamlReader
{
    private readonly YamlMappingNode map;
    private readonly HashSet<string> seen = new(StringComparer.Ordinal);
    private readonly string? absentAt;   // an absent section's position: where its key would go

    private YamlReader(YamlMappingNode map, string file, string prefix, string? absentAt = null)
    {
        this.map = map;
        File = file;
        Prefix = prefix;
        this.absentAt = absentAt;
    }

    public string File { get; }

    /// <summary>The path of this mapping in the document (<c>"data."</c>, <c>"rubrics[2]."</c>), put before keys in messages.</summary>
    public string Prefix { get; }

    /// <summary>The document's top mapping (an empty document is an empty mapping).</summary>
    public static YamlReader Parse(string text, string file)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new ConfigException($"{file}:{e.Start.Line}:{e.Start.Column}: YAML syntax error: {e.Message}", e);
        }
        catch (InvalidOperationException e)
        {
            // YamlDotNet's scanner throws this on some malformed input (found by the job-file fuzzer) instead of a YamlException.
            throw new ConfigException($"{file}: YAML the parser cannot read ({e.Message}); check the quoting and brackets", e);
        }

        if (stream.Documents.Count == 0)
        {
            return new YamlReader(new YamlMappingNode(), file, "");
        }

        if (stream.Documents[0].RootNode is not YamlMappingNode root)
        {
            throw new ConfigException($"{At(file, stream.Documents[0].RootNode)}: the file must be a YAML mapping of keys to values");
        }

        return new YamlReader(root, file, "");
    }

    /// <summary><see cref="Parse"/> of a file; a file that cannot be read is a <see cref="ConfigException"/> naming it.</summary>
    public static YamlReader Load(string path)
    {
        string text;
        try
        {
            text = System.IO.File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"{path}: {e.Message}", e);
        }

        return Parse(text, path);
    }

    private static string At(string file, YamlNode node) =>
        // YamlDotNet gives an implicit one-pair mapping in a flow list ("[a: 1]") no position of its own: use its key's
        node is YamlMappingNode { Start.Index: 0, Children.Count: > 0 } m ? At(file, m.Children.First().Key) : $"{file}:{node.Start.Line}:{node.Start.Column}";

    /// <summary>Where this mapping starts: <c>file:line:column</c>.</summary>
    public string At() => absentAt ?? At(File, map);

    /// <summary>Where <paramref name="key"/> stands (<c>file:line:column</c>), or where this mapping starts when it is absent.</summary>
    public string At(string key) => KeyNode(key) is { } k ? At(File, k) : At();

    private string Where(YamlNode node, string key) => $"{At(File, node)}: \"{Prefix}{key}\"";

    /// <summary>The error for a required key that is absent, at this mapping (<paramref name="what"/> says what it should hold).</summary>
    public ConfigException Missing(string key, string? what = null) =>
        new($"{At()}: required key \"{Prefix}{key}\"{(what is null ? "" : $" ({what})")} is missing");

    private YamlScalarNode? KeyNode(string key)
    {
        foreach (var (k, _) in map.Children)
        {
            if (k is YamlScalarNode s && s.Value == key)
            {
                return s;
            }
        }

        return null;
    }

    private YamlNode? Get(string key)
    {
        seen.Add(key);
        var k = KeyNode(key);
        if (k is null)
        {
            return null;
        }

        var v = map.Children[k];
        return v is YamlScalarNode { Value: null or "" or "~" or "null", Style: ScalarStyle.Plain } ? null : v;
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
        if (Sequence(key, "a list") is not { } seq)
        {
            return fallback;
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

    /// <summary>Whether <paramref name="key"/> is present with a value (a null or empty value counts as absent).</summary>
    public bool Has(string key) => Get(key) is not null;

    /// <summary>A nested mapping; an empty reader when the key is absent.</summary>
    public YamlReader Section(string key)
    {
        var node = Get(key);
        if (node is null)
        {
            return new YamlReader(new YamlMappingNode(), File, Prefix + key + ".", At(key));
        }

        if (node is not YamlMappingNode m)
        {
            throw new ConfigException($"{Where(node, key)} must be a mapping of keys to values");
        }

        return new YamlReader(m, File, Prefix + key + ".");
    }

    /// <summary>A list of mappings, one reader each; null when the key is absent.</summary>
    public IReadOnlyList<YamlReader>? MappingList(string key)
    {
        if (Sequence(key, "a list of mappings") is not { } seq)
        {
            return null;
        }

        var list = new List<YamlReader>();
        foreach (var item in seq.Children)
        {
            string path = $"{key}[{list.Count}]";
            list.Add(item is YamlMappingNode m
                ? new YamlReader(m, File, Prefix + path + ".")
                : throw new ConfigException($"{Where(item, path)} must be a mapping of keys to values"));
        }

        return list;
    }

    private YamlSequenceNode? Sequence(string key, string what)
    {
        var node = Get(key);
        return node is null or YamlSequenceNode
            ? (YamlSequenceNode?)node
            : throw new ConfigException($"{Where(node, key)} must be {what}");
    }

    /// <summary>Every key of this mapping with where it stands (all marked as read).</summary>
    public List<(string Key, string At)> Keys()
    {
        var keys = new List<(string, string)>();
        foreach (var (k, _) in map.Children)
        {
            string name = (k as YamlScalarNode)?.Value ?? "";
            seen.Add(name);
            keys.Add((name, At(File, k)));
        }

        return keys;
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
                    $"{At(File, k)}: unknown key \"{Prefix}{name}\" (known here: {string.Join(", ", seen.Order(StringComparer.Ordinal))})");
            }
        }
    }

    private static string Range(int min, int max) =>
        max == int.MaxValue ? $">= {min}" : min == int.MinValue ? $"<= {max}" : $"in [{min}, {max}]";
}
