using System.Collections.Concurrent;
using Google.Protobuf;
using K2RL.Common.Rpc;
using Pb = K2RL.Protos.Gym;

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
/// Register it on an <see cref="RpcServer"/> (<see cref="RemoteEnvironmentServer"/> does both).
/// </summary>
public sealed class GymService(GymRegistry registry, GymServiceOptions? options = null) : IRpcService, IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Session> sessions = new(StringComparer.Ordinal);
    private readonly GymServiceOptions options = options ?? new GymServiceOptions();

    public int SessionCount => sessions.Count;

    public void Register(RpcServer server)
    {
        server.AddUnary(GymProtocol.Reset, ResetAsync);
        server.AddUnary(GymProtocol.Step, StepAsync);
        server.AddUnary(GymProtocol.Close, CloseAsync);
        server.AddUnary(GymProtocol.Snapshot, SnapshotAsync);
        server.AddUnary(GymProtocol.Restore, RestoreAsync);
    }

    private async Task<Pb.ResetReply> ResetAsync(Pb.ResetRequest request, ServerCallContext context)
    {
        var session = await OpenAsync(request.Session, request.Env);
        return await session.RunAsync(async ct =>
        {
            var obs = await session.Env.ResetAsync(request.Seed, new ResetOptions
            {
                Split = request.Split == Pb.Split.HeldOut ? Split.HeldOut : Split.Train,
                Difficulty = request.Difficulty <= 0 ? 1 : request.Difficulty,
                Extra = new Dictionary<string, string>(request.Extra),
            }, ct);
            session.Started = true;
            return new Pb.ResetReply { Observation = GymProtocol.ToProto(obs) };
        }, context.CancellationToken);
    }

    private async Task<Pb.StepReply> StepAsync(Pb.StepRequest request, ServerCallContext context)
    {
        var session = Find(request.Session);
        return await session.RunAsync(async ct =>
        {
            if (!session.Started)
            {
                throw new RpcException(StatusCode.FailedPrecondition, $"session '{request.Session}': Step before Reset");
            }

            var result = await session.Env.StepAsync(TextChecks.DecodeUtf8(request.Action.Span), ct);
            return GymProtocol.ToProto(result);
        }, context.CancellationToken);
    }

    private async Task<Pb.CloseReply> CloseAsync(Pb.CloseRequest request, ServerCallContext context)
    {
        if (sessions.TryRemove(request.Session, out var session))
        {
            await session.DisposeAsync();
        }

        return new Pb.CloseReply();
    }

    private async Task<Pb.SnapshotReply> SnapshotAsync(Pb.SnapshotRequest request, ServerCallContext context)
    {
        var session = Find(request.Session);
        return await session.RunAsync(async ct =>
        {
            if (!session.Started)
            {
                throw new RpcException(StatusCode.FailedPrecondition, $"session '{request.Session}': Snapshot before Reset");
            }

            return new Pb.SnapshotReply { State = ByteString.CopyFrom(await session.Env.SnapshotAsync(ct)) };
        }, context.CancellationToken);
    }

    private async Task<Pb.RestoreReply> RestoreAsync(Pb.RestoreRequest request, ServerCallContext context)
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
                throw new RpcException(StatusCode.InvalidArgument, e.Message);
            }

            session.Started = true;
            return new Pb.RestoreReply();
        }, context.CancellationToken);
    }

    private async Task<Session> OpenAsync(string id, string env)
    {
        if (id.Length == 0)
        {
            throw new RpcException(StatusCode.InvalidArgument, "session id is empty");
        }

        await EvictIdleAsync();
        if (sessions.TryGetValue(id, out var existing))
        {
            if (env.Length > 0 && env != existing.Env.Name)
            {
                throw new RpcException(StatusCode.InvalidArgument, $"session '{id}' holds environment '{existing.Env.Name}', not '{env}'");
            }

            return existing;
        }

        if (sessions.Count >= options.MaxSessions)
        {
            throw new RpcException(StatusCode.ResourceExhausted, $"{sessions.Count} sessions open (limit {options.MaxSessions})");
        }

        IEnvironment instance;
        try
        {
            instance = registry.CreateEnvironment(env);
        }
        catch (K2RL.Common.ConfigException e)
        {
            throw new RpcException(StatusCode.InvalidArgument, e.Message);
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
        sessions.TryGetValue(id, out var s) ? s : throw new RpcException(StatusCode.NotFound, $"no session '{id}' (Reset or Restore opens one)");

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

/// <summary>An <see cref="RpcServer"/> hosting a <see cref="GymService"/>: every environment of a registry, remotely.</summary>
public sealed class RemoteEnvironmentServer : IAsyncDisposable
{
    private RemoteEnvironmentServer(RpcServer server, GymService service)
    {
        Server = server;
        Service = service;
    }

    public RpcServer Server { get; }

    public GymService Service { get; }

    /// <summary>The address clients use, e.g. http://127.0.0.1:5001/.</summary>
    public Uri Address => Server.Address;

    public static async Task<RemoteEnvironmentServer> StartAsync(GymRegistry registry, RpcServerOptions? rpc = null,
        GymServiceOptions? options = null, CancellationToken ct = default)
    {
        var service = new GymService(registry, options);
        var server = new RpcServer(rpc);
        server.AddService(service);
        await server.StartAsync(ct);
        return new RemoteEnvironmentServer(server, service);
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        await Service.DisposeAsync();
    }
}
