using YamlDotNet.RepresentationModel;

namespace K2RL.Common.Config;

/// <summary>
/// Small helpers over YamlDotNet's representation model that report <c>file:line:column</c>: for documents read
/// node by node (gym configs, rubrics); flat schemas use <see cref="YamlReader"/>.
/// </summary>
public static class Yaml
{
    public static string At(string file, YamlNode node) => $"{file}:{node.Start.Line}:{node.Start.Column}";

    public static YamlMappingNode Map(YamlNode node, string file, string what) =>
        node as YamlMappingNode ?? throw new ConfigException($"{At(file, node)}: {what} must be a mapping");

    public static void CheckKeys(YamlMappingNode map, string file, IReadOnlyCollection<string> allowed)
    {
        foreach (var key in map.Children.Keys)
        {
            string k = (key as YamlScalarNode)?.Value ?? "";
            if (!allowed.Contains(k))
            {
                throw new ConfigException($"{At(file, key)}: unknown key '{k}' (allowed: {string.Join(", ", allowed)})");
            }
        }
    }

    public static string RequiredString(YamlMappingNode map, string key, string file)
    {
        if (!map.Children.TryGetValue(new YamlScalarNode(key), out var node))
        {
            throw new ConfigException($"{At(file, map)}: missing '{key}'");
        }

        if (node is not YamlScalarNode { Value: { Length: > 0 } v })
        {
            throw new ConfigException($"{At(file, node)}: '{key}' must be a non-empty string");
        }

        return v;
    }

    public static string? OptionalString(YamlMappingNode map, string key, string file)
    {
        if (!map.Children.TryGetValue(new YamlScalarNode(key), out var node))
        {
            return null;
        }

        return (node as YamlScalarNode)?.Value ?? throw new ConfigException($"{At(file, node)}: '{key}' must be a string");
    }

    public static bool? OptionalBool(YamlMappingNode map, string key, string file)
    {
        if (!map.Children.TryGetValue(new YamlScalarNode(key), out var node))
        {
            return null;
        }

        return (node as YamlScalarNode)?.Value switch
        {
            "true" or "True" or "yes" => true,
            "false" or "False" or "no" => false,
            var v => throw new ConfigException($"{At(file, node)}: '{key}' must be true or false, not '{v}'"),
        };
    }

    public static IReadOnlyList<string> OptionalStrings(YamlMappingNode map, string key, string file)
    {
        if (!map.Children.TryGetValue(new YamlScalarNode(key), out var node))
        {
            return [];
        }

        if (node is not YamlSequenceNode seq)
        {
            throw new ConfigException($"{At(file, node)}: '{key}' must be a list of strings");
        }

        return seq.Children.Select(c => (c as YamlScalarNode)?.Value ??
                                        throw new ConfigException($"{At(file, c)}: '{key}' items must be strings")).ToList();
    }
}
