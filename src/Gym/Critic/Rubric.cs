using K2RL.Common;
using K2RL.Common.Config;

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

    /// <summary>Where it was defined (<c>file:line:column</c>), for messages.</summary>
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
    /// <summary>Every <c>*.yaml</c>/<c>*.yml</c> in <paramref name="directory"/>, in name order.</summary>
    public static IReadOnlyList<Rubric> LoadDirectory(string directory) => Merge(Files(directory).SelectMany(LoadFile));

    /// <summary>The rubric files of <paramref name="directory"/> (<c>*.yaml</c>, <c>*.yml</c>), in name order.</summary>
    public static IReadOnlyList<string> Files(string directory)
    {
        if (!Directory.Exists(directory))
        {
            throw new ConfigException($"{directory}: rubric directory not found");
        }

        return Directory.EnumerateFiles(directory)
            .Where(f => f.EndsWith(".yaml", StringComparison.Ordinal) || f.EndsWith(".yml", StringComparison.Ordinal))
            .OrderBy(f => f, StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>The rubrics of several files as one list; a name defined twice is an error naming both places.</summary>
    public static IReadOnlyList<Rubric> Merge(IEnumerable<Rubric> rubrics)
    {
        var all = new List<Rubric>();
        var seen = new Dictionary<string, Rubric>(StringComparer.Ordinal);
        foreach (var rubric in rubrics)
        {
            if (seen.TryGetValue(rubric.Name, out var earlier))
            {
                throw new ConfigException($"{rubric.Source}: rubric '{rubric.Name}' is already defined at {earlier.Source}");
            }

            seen[rubric.Name] = rubric;
            all.Add(rubric);
        }

        return all;
    }

    public static IReadOnlyList<Rubric> LoadFile(string path) => Parse(File.ReadAllText(path), path);

    public static IReadOnlyList<Rubric> Parse(string yaml, string file)
    {
        var root = YamlReader.Parse(yaml, file);
        var defaultKind = ParseKind(root, RubricKind.Core);
        var items = root.MappingList("rubrics");
        root.RejectUnknown();
        if (items is null)
        {
            throw root.Missing("rubrics", "a list of rubrics");
        }

        var rubrics = new List<Rubric>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var item in items)
        {
            // Every key is read before any is required, so a misspelt key is reported as unknown, not as missing.
            string? name = item.OptionalStr("name");
            string? description = item.OptionalStr("description");
            var kind = ParseKind(item, defaultKind);
            bool mandatory = item.Bool("mandatory", false);
            var criteria = item.StrList("criteria", []);
            var appliesTo = item.StrList("applies_to", []);
            item.RejectUnknown();
            if (name is null || description is null)
            {
                throw item.Missing(name is null ? "name" : "description");
            }

            if (!names.Add(name))
            {
                throw new ConfigException($"{item.At()}: rubric '{name}' appears twice in this file");
            }

            rubrics.Add(new Rubric
            {
                Name = name, Kind = kind, Mandatory = mandatory, Description = description, Criteria = criteria,
                AppliesTo = appliesTo, Source = item.At(),
            });
        }

        return rubrics;
    }

    private static readonly string[] KindNames = ["core", "prescriptive", "task_specific"];   // [RubricKind]

    private static RubricKind ParseKind(YamlReader r, RubricKind fallback) =>
        (RubricKind)Array.IndexOf(KindNames, r.Str("kind", KindNames[(int)fallback], KindNames));
}
