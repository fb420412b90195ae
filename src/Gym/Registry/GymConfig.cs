using K2RL.Common;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace K2RL.Gym;

/// <summary>
/// The <c>gym:</c> section of a job config (or a file holding just it):
/// <code>
/// gym:
///   plugins:                       # user assemblies, relative to the config file
///     - ../examples/GymPlugin/bin/Release/net10.0/K2RL.Examples.GymPlugin.dll
///   rubrics: ../configs/rubrics    # a directory of rubric YAML files
/// </code>
/// Unknown keys are rejected with <c>file:line:column</c>.
/// </summary>
public sealed record GymConfig
{
    public IReadOnlyList<string> Plugins { get; init; } = [];

    public string? RubricsDirectory { get; init; }

    private static readonly string[] Keys = ["plugins", "rubrics"];

    /// <summary>Reads the <c>gym:</c> section of <paramref name="path"/> (other top-level keys are someone else's).</summary>
    public static GymConfig Load(string path)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(File.ReadAllText(path)));
        }
        catch (YamlException e)
        {
            throw new ConfigException($"{path}:{e.Start.Line}:{e.Start.Column}: YAML syntax error: {e.Message}", e);
        }
        catch (IOException e)
        {
            throw new ConfigException($"{path}: {e.Message}", e);
        }

        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root ||
            !root.Children.TryGetValue(new YamlScalarNode("gym"), out var gymNode))
        {
            return new GymConfig();
        }

        var gym = Yaml.Map(gymNode, path, "'gym'");
        Yaml.CheckKeys(gym, path, Keys);
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string? rubrics = Yaml.OptionalString(gym, "rubrics", path);
        return new GymConfig
        {
            Plugins = Yaml.OptionalStrings(gym, "plugins", path).Select(p => Path.GetFullPath(p, dir)).ToList(),
            RubricsDirectory = rubrics is null ? null : Path.GetFullPath(rubrics, dir),
        };
    }

    /// <summary>Loads the plugins and rubrics into a registry.</summary>
    public GymRegistry ApplyTo(GymRegistry registry)
    {
        foreach (string plugin in Plugins)
        {
            registry.LoadPlugin(plugin);
        }

        if (RubricsDirectory is not null)
        {
            registry.LoadRubrics(RubricsDirectory);
        }

        return registry;
    }
}
