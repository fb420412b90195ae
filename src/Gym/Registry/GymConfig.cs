using K2RL.Common;
using K2RL.Common.Config;
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
///   remotes:                       # environments served elsewhere (k2rl.v1.Gym), used like local ones
///     - name: sandbox_code           # the name here
///       address: http://10.0.0.7:5001/
///       env: code                    # the name on the server (default: same as name)
///       step_timeout_s: 60
/// </code>
/// Unknown keys are rejected with <c>file:line:column</c>.
/// </summary>
public sealed record GymConfig
{
    public IReadOnlyList<string> Plugins { get; init; } = [];

    public string? RubricsDirectory { get; init; }

    public IReadOnlyList<RemoteEntry> Remotes { get; init; } = [];

    /// <summary>A remote environment registered under <see cref="Name"/>.</summary>
    public sealed record RemoteEntry(string Name, Uri Address, string Env, TimeSpan StepTimeout);

    private static readonly string[] Keys = ["plugins", "rubrics", "remotes"];
    private static readonly string[] RemoteKeys = ["name", "address", "env", "step_timeout_s"];

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
            Remotes = ParseRemotes(gym, path),
        };
    }

    private static List<RemoteEntry> ParseRemotes(YamlMappingNode gym, string path)
    {
        var list = new List<RemoteEntry>();
        if (!gym.Children.TryGetValue(new YamlScalarNode("remotes"), out var node))
        {
            return list;
        }

        if (node is not YamlSequenceNode seq)
        {
            throw new ConfigException($"{Yaml.At(path, node)}: 'remotes' must be a list");
        }

        foreach (var item in seq.Children)
        {
            var map = Yaml.Map(item, path, "a remote");
            Yaml.CheckKeys(map, path, RemoteKeys);
            string name = Yaml.RequiredString(map, "name", path);
            string address = Yaml.RequiredString(map, "address", path);
            if (!Uri.TryCreate(address, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp)
            {
                throw new ConfigException($"{Yaml.At(path, map)}: address '{address}' is not an http:// URL");
            }

            string? timeout = Yaml.OptionalString(map, "step_timeout_s", path);
            double seconds = 60;
            if (timeout is not null && (!double.TryParse(timeout, System.Globalization.NumberStyles.Float,
                    System.Globalization.CultureInfo.InvariantCulture, out seconds) || seconds <= 0))
            {
                throw new ConfigException($"{Yaml.At(path, map)}: step_timeout_s '{timeout}' is not a positive number");
            }

            list.Add(new RemoteEntry(name, uri, Yaml.OptionalString(map, "env", path) ?? name, TimeSpan.FromSeconds(seconds)));
        }

        return list;
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

        foreach (var remote in Remotes)
        {
            var channel = new Lazy<Grpc.Net.Client.GrpcChannel>(() => K2RL.Common.Rpc.GrpcChannels.Create(remote.Address));
            var options = new RemoteEnvironmentOptions { StepTimeout = remote.StepTimeout };
            registry.AddEnvironment(remote.Name, $"remote: {remote.Env} at {remote.Address}",
                _ => new RemoteEnvironment(channel.Value, remote.Env, options));
        }

        return registry;
    }
}
