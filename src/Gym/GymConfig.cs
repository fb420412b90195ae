using K2RL.Common;
using K2RL.Common.Config;
using K2RL.Gym.Remote;

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

    /// <summary>Reads the <c>gym:</c> section of <paramref name="path"/> (other top-level keys are someone else's).</summary>
    public static GymConfig Load(string path)
    {
        var gym = YamlReader.Load(path).Section("gym");
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string? rubrics = gym.OptionalStr("rubrics");
        var config = new GymConfig
        {
            Plugins = gym.StrList("plugins", []).Select(p => Path.GetFullPath(p, dir)).ToList(),
            RubricsDirectory = rubrics is null ? null : Path.GetFullPath(rubrics, dir),
            Remotes = (gym.MappingList("remotes") ?? []).Select(ParseRemote).ToList(),
        };
        gym.RejectUnknown();
        return config;
    }

    private static RemoteEntry ParseRemote(YamlReader remote)
    {
        string name = remote.OptionalStr("name") ?? throw remote.Missing("name");
        string address = remote.OptionalStr("address") ?? throw remote.Missing("address", "an http:// URL");
        string env = remote.Str("env", name);
        float seconds = remote.Float("step_timeout_s", 60, 0, minExclusive: true);
        remote.RejectUnknown();
        if (!Uri.TryCreate(address, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp)
        {
            throw new ConfigException($"{remote.At("address")}: \"{remote.Prefix}address\" '{address}' is not an http:// URL");
        }

        return new RemoteEntry(name, uri, env, TimeSpan.FromSeconds(seconds));
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
