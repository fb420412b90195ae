using K2RL.CheckpointEngine;
using K2RL.Gym;
using K2RL.Model;
using K2RL.Rollout.Episodes;
using Serilog;

namespace K2RL.Rollout.Workers;

/// <summary>
/// A worker's engine for one trainer epoch: the published model's decoder and tokenizer, and the checkpoint-engine
/// receiver (shared memory or the network) it takes weights from. A new epoch gets a new session.
/// </summary>
internal sealed class WorkerSession : IAsyncDisposable
{
    private readonly SharedMemoryWeightReceiver? shm;
    private readonly NetworkWeightReceiver? net;
    private readonly Common.Rpc.GrpcServer? health;

    private WorkerSession(RolloutModelInfo info, RolloutEngine engine, SharedMemoryWeightReceiver? shm, NetworkWeightReceiver? net, Common.Rpc.GrpcServer? health)
    {
        Info = info;
        Engine = engine;
        this.shm = shm;
        this.net = net;
        this.health = health;
    }

    public RolloutModelInfo Info { get; }

    public long Epoch => Info.Epoch;

    public RolloutEngine Engine { get; }

    /// <summary>The receiver's address as registered: a wildcard bind (0.0.0.0, [::]) is replaced by <c>K2RL_ADVERTISE_HOST</c> when set.</summary>
    public Uri? Address => net is null ? null : Advertised(net.Address, Environment.GetEnvironmentVariable(AdvertiseVariable));

    public const string AdvertiseVariable = "K2RL_ADVERTISE_HOST";

    internal static Uri Advertised(Uri bound, string? host) =>
        host is { Length: > 0 } && bound.Host is "0.0.0.0" or "[::]" or "::" ? new UriBuilder(bound) { Host = host }.Uri : bound;

    /// <summary>The newest version the receiver holds (the engine takes it when work needs it).</summary>
    public long ReceivedVersion => shm?.HeldVersion ?? net!.HeldVersion;

    public static async Task<WorkerSession> StartAsync(RolloutModelInfo info, RolloutWorkerOptions options, Func<Task<IReadOnlyList<Uri>>> peers,
        ILogger log, CancellationToken ct)
    {
        if (info.Transport != options.Weights)
        {
            throw new Common.ConfigException($"the trainer ships weights by {info.Transport}; this worker was started with --weights {options.Weights}");
        }

        // always keeps routing records: the trainer replays them when its job has routing replay on (docs/RL.md)
        var decoder = new ModelDecoder(info.Config, options.MaxBatch, precision: info.Precision, recordRouting: info.Config.RoutingStride > 0);
        var tensors = new ParameterLayout(info.Config).ToTensorSpecs();
        SharedMemoryWeightReceiver? shm = null;
        NetworkWeightReceiver? net = null;
        Common.Rpc.GrpcServer? health = null;
        IWeightSource source;
        if (options.Weights == "shm")
        {
            string name = options.ShmName ?? info.ShmName ?? throw new Common.ConfigException("the trainer published no shared-memory name; give --shm NAME");
            shm = new SharedMemoryWeightReceiver(name, tensors);
            // in the background every 10 ms (a version arrives while the worker generates or idles: 100 wake-ups a
            // second, not 1,000, beside a trainer on the same cores); work that needs a version reads it at once (SyncWeights)
            shm.Start(TimeSpan.FromMilliseconds(10));
            source = shm;
            if (options.Listen is { } listen)
            {
                var (host, port) = Common.Rpc.GrpcServerOptions.ParseListen(listen);
                health = await Common.Rpc.GrpcServer.Create(new Common.Rpc.GrpcServerOptions { Host = host, Port = port }).StartAsync(ct).ConfigureAwait(false);
                log.Information("serving grpc.health.v1 on {Address}", health.Address);
            }
        }
        else
        {
            var (host, port) = Common.Rpc.GrpcServerOptions.ParseListen(options.Listen!);
            net = await NetworkWeightReceiver.StartAsync(tensors, new NetworkReceiverOptions { Host = host, Port = port, Peers = await peers(), DataLanePort = options.DataLanePort }, ct: ct)
                .ConfigureAwait(false);
            log.Information("serving k2rl.v1.Checkpoint and grpc.health.v1 on {Address}, the data lane on port {DataLanePort}", net.Address, net.DataLanePort);
            source = net;
        }

        var tokenizer = info.Tokenizer;
        var engine = new RolloutEngine(decoder, new EngineOptions
        {
            Detokenize = ids => tokenizer.Decode(ids.ToArray()),
            SampleableVocab = tokenizer.VocabSize,
        }, source, initialVersion: -1);
        return new WorkerSession(info, engine, shm, net, health);
    }

    /// <summary>Takes a newer version into the engine: from shared memory at once (not at the next background poll), else what the receiver holds.</summary>
    public void SyncWeights()
    {
        shm?.TryReceive();
        lock (Engine)
        {
            Engine.SyncWeights();
        }
    }

    /// <summary>Runs the items together (one budget: their shares summed, or none when any has none).</summary>
    public Task<EpisodeBatch> RunAsync(IReadOnlyList<RolloutWorkItem> items, GymRegistry registry, CancellationToken ct)
    {
        var byEnv = items.GroupBy(i => i.Episode.Env).ToDictionary(g => g.Key, g => g.First().Options, StringComparer.Ordinal);
        var runner = new EpisodeRunner(Engine, Info.Tokenizer, registry.CreateEnvironment, items[0].Options, env => byEnv.GetValueOrDefault(env, items[0].Options));
        long budget = items.All(i => i.TokenBudget > 0) ? items.Sum(i => i.TokenBudget) : long.MaxValue;
        return runner.RunAsync(items.Where(i => i.Request is not null).Select(i => i.Request!).ToList(),
            items.Where(i => i.Paused is not null).Select(i => i.Paused!).ToList(), items[0].Temperature, budget, ct);
    }

    public async ValueTask DisposeAsync()
    {
        shm?.Dispose();
        if (health is not null)
        {
            await health.DisposeAsync().ConfigureAwait(false);
        }

        if (net is not null)
        {
            await net.DisposeAsync().ConfigureAwait(false);
        }
    }
}
