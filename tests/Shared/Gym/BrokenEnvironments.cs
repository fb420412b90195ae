using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Remote;

namespace K2RL.Tests.Shared;

/// <summary>
/// Environments that break the rules the way a misbehaving remote does (issue 14, item 2), served over real sockets
/// by a real <see cref="RemoteEnvironmentServer"/>: <c>nan</c> answers every step with a NaN reward, <c>endless</c>
/// never ends an episode (reward 0.25 a step), <c>hang</c> never answers a step (until the caller gives up),
/// <c>huge</c> ends each episode with a finite but absurd reward (±1e300, alternating between the samples of a task), which makes the RL loss and
/// gradient non-finite.
/// </summary>
public sealed class BrokenEnvironmentServer : IAsyncDisposable
{
    public static readonly string[] Names = ["nan", "endless", "hang", "huge"];

    private BrokenEnvironmentServer(RemoteEnvironmentServer server) => Server = server;

    public RemoteEnvironmentServer Server { get; }

    public Uri Address => Server.Address;

    public static async Task<BrokenEnvironmentServer> StartAsync()
    {
        var registry = GymRegistry.CreateDefault();
        foreach (string name in Names)
        {
            registry.AddEnvironment(name, $"misbehaves: {name}", _ => new BrokenEnvironment(name));
        }

        return new BrokenEnvironmentServer(await RemoteEnvironmentServer.StartAsync(registry));
    }

    /// <summary>A client registry: the built-ins plus this server's environments, by the same names, as <see cref="RemoteEnvironment"/>s.</summary>
    public GymRegistry ClientRegistry()
    {
        var registry = GymRegistry.CreateDefault();
        var channel = K2RL.Common.Rpc.GrpcChannels.Create(Address);
        foreach (string name in Names)
        {
            registry.AddEnvironment(name, $"remote: {name} at {Address}", _ => new RemoteEnvironment(channel, name));
        }

        return registry;
    }

    /// <summary>The <c>gym:</c> section naming this server's environments as remotes.</summary>
    public string GymYaml() =>
        "gym:\n  remotes:\n" + string.Concat(Names.Select(n => $"    - name: {n}\n      address: {Address}\n"));

    public ValueTask DisposeAsync() => Server.DisposeAsync();

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<long, int> HugeEpisodes = new();

    private sealed class BrokenEnvironment(string name) : IEnvironment
    {
        public string Name => name;

        private long seed;

        public ValueTask<Observation> ResetAsync(long seed, ResetOptions? options = null, CancellationToken ct = default)
        {
            this.seed = seed;
            return ValueTask.FromResult(Observation.Of(Message.UserText($"Task {seed}: say anything.")));
        }

        public async ValueTask<StepResult> StepAsync(string action, CancellationToken ct = default)
        {
            switch (name)
            {
                case "nan":
                    return new StepResult(Observation.Of(Message.UserText("go on")), double.NaN, false, false, StepInfo.None);
                case "endless":
                    return new StepResult(Observation.Of(Message.UserText("go on")), 0.25, false, false, StepInfo.None);
                case "huge":
                    // The samples of one prompt share its task seed: counting episodes per seed gives them opposite signs
                    // whichever finishes first (counting all episodes together could give a group's two the same sign).
                    double sign = HugeEpisodes.AddOrUpdate(seed, 1, (_, n) => n + 1) % 2 == 0 ? 1 : -1;
                    return new StepResult(Observation.Empty, sign * 1e300, true, false, StepInfo.None);
                default:
                    await Task.Delay(TimeSpan.FromMinutes(10), ct);   // gives up only when the call is cancelled
                    throw new InvalidOperationException("unreachable");
            }
        }

        public ValueTask<byte[]> SnapshotAsync(CancellationToken ct = default) => ValueTask.FromResult(System.Text.Encoding.UTF8.GetBytes(name));

        public ValueTask RestoreAsync(ReadOnlyMemory<byte> state, CancellationToken ct = default) => ValueTask.CompletedTask;

        public ValueTask CloseAsync() => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
