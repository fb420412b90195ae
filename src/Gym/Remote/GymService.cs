using System.Collections.Concurrent;
using Google.Protobuf;
using Grpc.Core;
using K2RL.Common.Rpc;
using Wire = K2RL.Protos.Gym;

namespace K2RL.Gym.Remote;

public sealed record GymServiceOptions
{
    /// <summary>Sessions held at once; a Reset or Restore that would open one more fails with RESOURCE_EXHAUSTED.</summary>
    public int MaxSessions { get; init; } = 1024;

    /// <summary>A session nobody called for this long is closed.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(30);
}

/// <summary>
/// Serves any environment of a <see cref="GymRegistry"/> over <c>k2rl.v1.Gym</c> (protos/k2rl/v1/gym.proto). Each
/// session holds one environment instance; calls on one session are serialized, sessions run concurrently.
/// Add it to a <see cref="GrpcServer"/> (<see cref="RemoteEnvironmentServer"/> does both).
/// </summary>
public sealed class GymService(GymRegistry registry, GymServiceOptions? options = null) : Wire.Gym.GymBase, IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Session> sessions = new(StringComparer.Ordinal);
    private readonly GymServiceOptions options = options ?? new GymServiceOptions();

    public int SessionCount => sessions.Count;

    public override async Task<Wire.ResetReply> Reset(Wire.ResetRequest request, ServerCallContext context)
    {
        var session = await OpenAsync(request.Session, request.Env);
        return await session.RunAsync(async ct =>
        {
            var obs = await session.Env.ResetAsync(request.Seed, new ResetOptions
            {
                Split = request.Split == Wire.Split.HeldOut ? Split.HeldOut : Split.Train,
                Difficulty = request.Difficulty <= 0 ? 1 : request.Difficulty,
                Extra = new Dictionary<string, string>(request.Extra),
            }, ct);
            session.Started = true;
            return new Wire.ResetReply { Observation = GymProtocol.ToProto(obs) };
        }, context.CancellationToken);
    }

    public override async Task<Wire.StepReply> Step(Wire.StepRequest request, ServerCallContext context)
    {
        var session = Find(request.Session);
        return await session.RunAsync(async ct =>
        {
            if (!session.Started)
            {
                throw new RpcException(new Status(StatusCode.FailedPrecondition, $"session '{request.Session}': Step before Reset"));
            }

            var result = await session.Env.StepAsync(TextChecks.DecodeUtf8(request.Action.Span), ct);
            return GymProtocol.ToProto(result);
        }, context.CancellationToken);
    }

    public override async Task<Wire.CloseReply> Close(Wire.CloseRequest request, ServerCallContext context)
    {
        if (sessions.TryRemove(request.Session, out var session))
        {
            await session.DisposeAsync();
        }

        return new Wire.CloseReply();
    }

    public override async Task<Wire.SnapshotReply> Snapshot(Wire.SnapshotRequest request, ServerCallContext context)
    {
        var session = Find(request.Session);
        return await session.RunAsync(async ct =>
        {
            if (!session.Started)
            {
                throw new RpcException(new Status(StatusCode.FailedPrecondition, $"session '{request.Session}': Snapshot before Reset"));
            }

            return new Wire.SnapshotReply { State = ByteString.CopyFrom(await session.Env.SnapshotAsync(ct)) };
        }, context.CancellationToken);
    }

    public override async Task<Wire.RestoreReply> Restore(Wire.RestoreRequest request, ServerCallContext context)
    {
        var session = await OpenAsync(request.Session, request.Env);
        return await session.RunAsync(async ct =>
        {
            try
            {
                await session.Env.RestoreAsync(request.State.Memory, ct);
            }
            catch (SnapshotException e)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, e.Message));
            }

            session.Started = true;
            return new Wire.RestoreReply();
        }, context.CancellationToken);
    }

    private async Task<Session> OpenAsync(string id, string env)
    {
        if (id.Length == 0)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "session id is empty"));
        }

        await EvictIdleAsync();
        if (sessions.TryGetValue(id, out var existing))
        {
            if (env.Length > 0 && env != existing.Env.Name)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, $"session '{id}' holds environment '{existing.Env.Name}', not '{env}'"));
            }

            return existing;
        }

        if (sessions.Count >= options.MaxSessions)
        {
            throw new RpcException(new Status(StatusCode.ResourceExhausted, $"{sessions.Count} sessions open (limit {options.MaxSessions})"));
        }

        IEnvironment instance;
        try
        {
            instance = registry.CreateEnvironment(env);
        }
        catch (K2RL.Common.ConfigException e)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, e.Message));
        }

        var session = new Session(instance);
        if (!sessions.TryAdd(id, session))
        {
            await session.DisposeAsync();
            return sessions[id];
        }

        return session;
    }

    private Session Find(string id) =>
        sessions.TryGetValue(id, out var s) ? s : throw new RpcException(new Status(StatusCode.NotFound, $"no session '{id}' (Reset or Restore opens one)"));

    private async Task EvictIdleAsync()
    {
        var cutoff = DateTime.UtcNow - options.IdleTimeout;
        foreach (var (id, s) in sessions)
        {
            if (s.LastUsed < cutoff && sessions.TryRemove(id, out var removed))
            {
                await removed.DisposeAsync();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var id in sessions.Keys.ToList())
        {
            if (sessions.TryRemove(id, out var s))
            {
                await s.DisposeAsync();
            }
        }
    }

    private sealed class Session(IEnvironment env) : IAsyncDisposable
    {
        private readonly SemaphoreSlim gate = new(1, 1);

        public IEnvironment Env { get; } = env;

        public bool Started { get; set; }

        public DateTime LastUsed { get; private set; } = DateTime.UtcNow;

        public async Task<T> RunAsync<T>(Func<CancellationToken, Task<T>> work, CancellationToken ct)
        {
            await gate.WaitAsync(ct);
            try
            {
                LastUsed = DateTime.UtcNow;
                return await work(ct);
            }
            finally
            {
                LastUsed = DateTime.UtcNow;
                gate.Release();
            }
        }

        public async ValueTask DisposeAsync()
        {
            await Env.CloseAsync();
        }
    }
}

/// <summary>A <see cref="GrpcServer"/> hosting a <see cref="GymService"/>: every environment of a registry, remotely.</summary>
public sealed class RemoteEnvironmentServer : IAsyncDisposable
{
    private RemoteEnvironmentServer(GrpcServer server, GymService service)
    {
        Server = server;
        Service = service;
    }

    public GrpcServer Server { get; }

    public GymService Service { get; }

    /// <summary>The address clients use, e.g. http://127.0.0.1:5001/.</summary>
    public Uri Address => Server.Address;

    public static async Task<RemoteEnvironmentServer> StartAsync(GymRegistry registry, GrpcServerOptions? rpc = null,
        GymServiceOptions? options = null, CancellationToken ct = default)
    {
        var service = new GymService(registry, options);
        var server = await GrpcServer.Create(rpc).AddService(service).StartAsync(ct);
        return new RemoteEnvironmentServer(server, service);
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        await Service.DisposeAsync();
    }
}
