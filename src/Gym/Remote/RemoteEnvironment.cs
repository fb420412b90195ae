using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using K2RL.Common;
using K2RL.Common.Rpc;
using Wire = K2RL.Protos.Gym;

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
/// episode as failed (<see cref="StepResult.Failure"/>: truncated, reward 0, <see cref="StepInfo.Failure"/> saying what happened), so a hung or dead
/// remote costs one failed episode and never a stuck caller. Reset, Snapshot and Restore throw
/// <see cref="RemoteEnvironmentException"/> (there is no episode to fail yet, or the caller needs the bytes).
/// </summary>
public sealed class RemoteEnvironment : IEnvironment
{
    private readonly GrpcChannel channel;
    private readonly Wire.Gym.GymClient client;
    private readonly bool ownsChannel;
    private readonly RemoteEnvironmentOptions options;
    private bool failed;

    public RemoteEnvironment(GrpcChannel channel, string envName, RemoteEnvironmentOptions? options = null, string? session = null)
    {
        this.channel = channel;
        client = new Wire.Gym.GymClient(channel);
        Name = envName;
        this.options = options ?? new RemoteEnvironmentOptions();
        Session = session ?? Guid.NewGuid().ToString("N");
    }

    public RemoteEnvironment(Uri address, string envName, RemoteEnvironmentOptions? options = null)
        : this(GrpcChannels.Create(address), envName, options)
    {
        ownsChannel = true;
    }

    public string Name { get; }

    /// <summary>This instance's session id on the server.</summary>
    public string Session { get; }

    public async ValueTask<Observation> ResetAsync(long seed, ResetOptions? options = null, CancellationToken ct = default)
    {
        options ??= ResetOptions.Default;
        var request = new Wire.ResetRequest
        {
            Session = Session,
            Env = Name,
            Seed = seed,
            Split = options.Split == Split.HeldOut ? Wire.Split.HeldOut : Wire.Split.Train,
            Difficulty = options.Difficulty,
        };
        foreach (var (k, v) in options.Extra)
        {
            request.Extra[k] = v;
        }
        var reply = await CallAsync(client.ResetAsync(request, deadline: Deadline(this.options.CallTimeout), cancellationToken: ct), ct);
        failed = false;
        return GymProtocol.FromProto(reply.Observation);
    }

    public async ValueTask<StepResult> StepAsync(string action, CancellationToken ct = default)
    {
        if (failed)
        {
            return StepResult.Failure($"remote environment '{Name}' at {channel.Target} failed earlier in this episode");
        }

        try
        {
            var reply = await client.StepAsync(
                new Wire.StepRequest { Session = Session, Action = ByteString.CopyFromUtf8(action) }, deadline: Deadline(options.StepTimeout), cancellationToken: ct);
            return GymProtocol.FromProto(reply);
        }
        catch (RpcException e) when (!ct.IsCancellationRequested)
        {
            failed = true;
            return StepResult.Failure(Describe(e));
        }
    }

    public async ValueTask<byte[]> SnapshotAsync(CancellationToken ct = default)
    {
        var reply = await CallAsync(client.SnapshotAsync(new Wire.SnapshotRequest { Session = Session }, deadline: Deadline(options.CallTimeout), cancellationToken: ct), ct);
        return reply.State.ToByteArray();
    }

    public async ValueTask RestoreAsync(ReadOnlyMemory<byte> state, CancellationToken ct = default)
    {
        await CallAsync(client.RestoreAsync(
            new Wire.RestoreRequest { Session = Session, Env = Name, State = ByteString.CopyFrom(state.Span) }, deadline: Deadline(options.CallTimeout), cancellationToken: ct), ct);
        failed = false;
    }

    public async ValueTask CloseAsync()
    {
        try
        {
            await client.CloseAsync(new Wire.CloseRequest { Session = Session }, deadline: Deadline(options.CloseTimeout));
        }
        catch (RpcException)
        {
            // Best effort: the server evicts idle sessions anyway.
        }

        if (ownsChannel)
        {
            channel.Dispose();
        }
    }

    public ValueTask DisposeAsync() => CloseAsync();

    private async Task<TResponse> CallAsync<TResponse>(AsyncUnaryCall<TResponse> call, CancellationToken ct)
    {
        using (call)
        {
            try
            {
                return await call.ResponseAsync;
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                throw new RemoteEnvironmentException(Describe(e), e);
            }
        }
    }

    /// <summary>What went wrong, with the environment and the endpoint: "remote environment 'x' at host:port: DeadlineExceeded: ...".</summary>
    private string Describe(RpcException e) => $"remote environment '{Name}' at {channel.Target}: {e.StatusCode}: {e.Status.Detail}";

    private static DateTime Deadline(TimeSpan timeout) => DateTime.UtcNow + timeout;
}
