using K2RL.Common;
using K2RL.Common.Config;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace K2RL.Gym.Critic;

/// <summary>SPEC §3's rubric families. Persisted by name in YAML (<c>core</c>, <c>prescriptive</c>, <c>task_specific</c>).</summary>
public enum RubricKind
{
    Core = 0,
    Prescriptive = 1,
    TaskSpecific = 2,
}

/// <summary>
/// One rubric the critic judges against. A <see cref="Mandatory"/> rubric is a gate: a response that violates it
/// loses to one that does not. Task-specific rubrics apply to prompts carrying one of <see cref="AppliesTo"/>'s tags.
/// </summary>
public sealed record Rubric
{
    public required string Name { get; init; }

    public RubricKind Kind { get; init; }

    public bool Mandatory { get; init; }

    public required string Description { get; init; }

    public IReadOnlyList<string> Criteria { get; init; } = [];

    public IReadOnlyList<string> AppliesTo { get; init; } = [];

    /// <summary>Where it was defined (<c>file:line</c>), for messages.</summary>
    public string Source { get; init; } = "";

    /// <summary>Whether this rubric applies to a prompt with these tags (core and prescriptive always do).</summary>
    public bool AppliesToTags(IReadOnlyCollection<string> tags) =>
        Kind != RubricKind.TaskSpecific || AppliesTo.Count == 0 || AppliesTo.Any(tags.Contains);
}

/// <summary>
/// Loads rubric files at run time. A file holds a default <c>kind</c> and a list of rubrics:
/// <code>
/// kind: core
/// rubrics:
///   - name: clarity_and_relevance
///     mandatory: false
///     description: The response answers what was asked, clearly.
///     criteria: [Stays on the question, ...]
///     applies_to: [tag, ...]     # task_specific only
/// </code>
/// Any error (YAML syntax, unknown key, wrong type, missing field, duplicate name) is a
/// <see cref="ConfigException"/> whose message starts with <c>file:line:column</c>.
/// </summary>
public static class RubricLoader
{
    private static readonly string[] FileKeys = ["kind", "rubrics"];
    private static readonly string[] RubricKeys = ["name", "kind", "mandatory", "description", "criteria", "applies_to"];

    /// <summary>Every <c>*.yaml</c>/<c>*.yml</c> in <paramref name="directory"/>, in name order.</summary>
    public static IReadOnlyList<Rubric> LoadDirectory(string directory)
    {
        if (!Directory.Exists(directory))
        {
            throw new ConfigException($"{directory}: rubric directory not found");
        }

        var all = new List<Rubric>();
        var seen = new Dictionary<string, Rubric>(StringComparer.Ordinal);
        foreach (string file in Directory.EnumerateFiles(directory)
                     .Where(f => f.EndsWith(".yaml", StringComparison.Ordinal) || f.EndsWith(".yml", StringComparison.Ordinal))
                     .OrderBy(f => f, StringComparer.Ordinal))
        {
            foreach (var rubric in LoadFile(file))
            {
                if (seen.TryGetValue(rubric.Name, out var earlier))
                {
                    throw new ConfigException($"{rubric.Source}: rubric '{rubric.Name}' is already defined at {earlier.Source}");
                }

                seen[rubric.Name] = rubric;
                all.Add(rubric);
            }
        }

        return all;
    }

    public static IReadOnlyList<Rubric> LoadFile(string path) => Parse(File.ReadAllText(path), path);

    public static IReadOnlyList<Rubric> Parse(string yaml, string file)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(yaml));
        }
        catch (YamlException e)
        {
            throw new ConfigException($"{file}:{e.Start.Line}:{e.Start.Column}: YAML syntax error: {e.Message}", e);
        }

        if (stream.Documents.Count == 0)
        {
            throw new ConfigException($"{file}:1:1: empty rubric file");
        }

        var root = Yaml.Map(stream.Documents[0].RootNode, file, "the file");
        Yaml.CheckKeys(root, file, FileKeys);
        var defaultKind = RubricKind.Core;
        if (root.Children.TryGetValue(new YamlScalarNode("kind"), out var kindNode))
        {
            defaultKind = ParseKind(kindNode, file);
        }

        if (!root.Children.TryGetValue(new YamlScalarNode("rubrics"), out var listNode) || listNode is not YamlSequenceNode list)
        {
            throw new ConfigException($"{Yaml.At(file, root)}: 'rubrics' must be a list of rubrics");
        }

        var rubrics = new List<Rubric>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var item in list.Children)
        {
            var map = Yaml.Map(item, file, "a rubric");
            Yaml.CheckKeys(map, file, RubricKeys);
            string name = Yaml.RequiredString(map, "name", file);
            if (!names.Add(name))
            {
                throw new ConfigException($"{Yaml.At(file, map)}: rubric '{name}' appears twice in this file");
            }

            var kind = map.Children.TryGetValue(new YamlScalarNode("kind"), out var k) ? ParseKind(k, file) : defaultKind;
            rubrics.Add(new Rubric
            {
                Name = name,
                Kind = kind,
                Mandatory = Yaml.OptionalBool(map, "mandatory", file) ?? false,
                Description = Yaml.RequiredString(map, "description", file),
                Criteria = Yaml.OptionalStrings(map, "criteria", file),
                AppliesTo = Yaml.OptionalStrings(map, "applies_to", file),
                Source = Yaml.At(file, map).TrimEnd(':'),
            });
        }

        return rubrics;
    }

    private static RubricKind ParseKind(YamlNode node, string file) =>
        (node as YamlScalarNode)?.Value switch
        {
            "core" => RubricKind.Core,
            "prescriptive" => RubricKind.Prescriptive,
            "task_specific" => RubricKind.TaskSpecific,
            var v => throw new ConfigException(
                $"{Yaml.At(file, node)}: kind '{v}' is not one of core, prescriptive, task_specific"),
        };
}
