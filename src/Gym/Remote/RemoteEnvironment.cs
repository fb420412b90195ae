using Google.Protobuf;
using K2RL.Common;
using K2RL.Common.Rpc;
using Pb = K2RL.Protos.Gym;

namespace K2RL.Gym.Remote;

public sealed record RemoteEnvironmentOptions
{
    /// <summary>Deadline of Step (the environment's own work included: a sandboxed program, a simulator).</summary>
    public TimeSpan StepTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Deadline of Reset, Snapshot and Restore.</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Deadline of Close (best effort; a failure is ignored).</summary>
    public TimeSpan CloseTimeout { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>A remote environment that could not be reached or did not answer in time.</summary>
public sealed class RemoteEnvironmentException(string message, Exception inner) : K2Exception(message, inner);

/// <summary>
/// A remote environment (any server speaking <c>k2rl.v1.Gym</c>, in any language) behind <see cref="IEnvironment"/>.
/// Every call has a deadline. A Step that fails (timeout, dead server, any status) does not throw: it ends the
/// episode as truncated, with reward 0 and <see cref="StepInfo.Error"/> saying what happened, so a hung or dead
/// remote costs one failed episode and never a stuck caller. Reset, Snapshot and Restore throw
/// <see cref="RemoteEnvironmentException"/> (there is no episode to fail yet, or the caller needs the bytes).
/// </summary>
public sealed class RemoteEnvironment : IEnvironment
{
    private readonly RpcClient client;
    private readonly bool ownsClient;
    private readonly RemoteEnvironmentOptions options;
    private bool failed;

    public RemoteEnvironment(RpcClient client, string envName, RemoteEnvironmentOptions? options = null, string? session = null)
    {
        this.client = client;
        Name = envName;
        this.options = options ?? new RemoteEnvironmentOptions();
        Session = session ?? Guid.NewGuid().ToString("N");
    }

    public RemoteEnvironment(Uri address, string envName, RemoteEnvironmentOptions? options = null)
        : this(new RpcClient(address), envName, options)
    {
        ownsClient = true;
    }

    public string Name { get; }

    /// <summary>This instance's session id on the server.</summary>
    public string Session { get; }

    public async ValueTask<Observation> ResetAsync(long seed, ResetOptions? options = null, CancellationToken ct = default)
    {
        options ??= ResetOptions.Default;
        var request = new Pb.ResetRequest
        {
            Session = Session,
            Env = Name,
            Seed = seed,
            Split = options.Split == Split.HeldOut ? Pb.Split.HeldOut : Pb.Split.Train,
            Difficulty = options.Difficulty,
        };
        foreach (var (k, v) in options.Extra)
        {
            request.Extra[k] = v;
        }
        var reply = await CallAsync(GymProtocol.Reset, request, this.options.CallTimeout, ct);
        failed = false;
        return GymProtocol.FromProto(reply.Observation);
    }

    public async ValueTask<StepResult> StepAsync(string action, CancellationToken ct = default)
    {
        if (failed)
        {
            return Failed("the remote environment failed earlier in this episode");
        }

        try
        {
            var reply = await client.UnaryAsync(GymProtocol.Step,
                new Pb.StepRequest { Session = Session, Action = ByteString.CopyFromUtf8(action) },
                new CallOptions(options.StepTimeout, ct));
            return GymProtocol.FromProto(reply);
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            failed = true;
            return Failed($"remote environment '{Name}' at {client.Address}: {e.Message}");
        }
    }

    public async ValueTask<byte[]> SnapshotAsync(CancellationToken ct = default)
    {
        var reply = await CallAsync(GymProtocol.Snapshot, new Pb.SnapshotRequest { Session = Session }, options.CallTimeout, ct);
        return reply.State.ToByteArray();
    }

    public async ValueTask RestoreAsync(ReadOnlyMemory<byte> state, CancellationToken ct = default)
    {
        await CallAsync(GymProtocol.Restore,
            new Pb.RestoreRequest { Session = Session, Env = Name, State = ByteString.CopyFrom(state.Span) }, options.CallTimeout, ct);
        failed = false;
    }

    public async ValueTask CloseAsync()
    {
        try
        {
            await client.UnaryAsync(GymProtocol.Close, new Pb.CloseRequest { Session = Session }, new CallOptions(options.CloseTimeout));
        }
        catch (RpcException)
        {
            // Best effort: the server evicts idle sessions anyway.
        }

        if (ownsClient)
        {
            client.Dispose();
        }
    }

    public ValueTask DisposeAsync() => CloseAsync();

    private async Task<TResponse> CallAsync<TRequest, TResponse>(RpcMethod<TRequest, TResponse> method, TRequest request,
        TimeSpan timeout, CancellationToken ct)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        try
        {
            return await client.UnaryAsync(method, request, new CallOptions(timeout, ct));
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            throw new RemoteEnvironmentException($"remote environment '{Name}' at {client.Address}: {e.Message}", e);
        }
    }

    private static StepResult Failed(string error) =>
        new(Observation.Empty, 0, false, true, new StepInfo { Correct = false, Error = error });
}
