using Grpc.Core;
using Wire = K2RL.Protos.V1;

namespace K2RL.Rollout;

/// <summary>Serves a <see cref="RolloutService"/> as k2rl.v1.Rollout (protos/k2rl/v1/rollout.proto); its failures become gRPC statuses.
/// Host <see cref="RolloutService.Checkpoint"/> on the same server for its weights.</summary>
public sealed class RolloutGrpcService(RolloutService service) : Wire.Rollout.RolloutBase
{
    public override async Task Generate(Wire.GenerateRequest request, IServerStreamWriter<Wire.GenerateEvent> responseStream, ServerCallContext context)
    {
        await foreach (var e in Mapped(service.GenerateAsync(request, context.CancellationToken)).ConfigureAwait(false))
        {
            await responseStream.WriteAsync(e).ConfigureAwait(false);
        }
    }

    public override Task<Wire.PauseReply> Pause(Wire.PauseRequest request, ServerCallContext context) => Call(() => service.PauseAsync(request));

    public override Task<Wire.ResumeReply> Resume(Wire.ResumeRequest request, ServerCallContext context) =>
        Call(() => Task.FromResult(service.Resume(request)));

    public override Task<Wire.DrainReply> Drain(Wire.DrainRequest request, ServerCallContext context) =>
        Call(() => service.DrainAsync(request, context.CancellationToken));

    public override Task<Wire.HealthReply> Health(Wire.HealthRequest request, ServerCallContext context) => Task.FromResult(service.Health(request));

    private static async Task<T> Call<T>(Func<Task<T>> body)
    {
        try
        {
            return await body().ConfigureAwait(false);
        }
        catch (RolloutServiceException e)
        {
            throw ToRpc(e);
        }
    }

    private static async IAsyncEnumerable<Wire.GenerateEvent> Mapped(IAsyncEnumerable<Wire.GenerateEvent> events)
    {
        await using var e = events.GetAsyncEnumerator();
        while (true)
        {
            bool more;
            try
            {
                more = await e.MoveNextAsync().ConfigureAwait(false);
            }
            catch (RolloutServiceException ex)
            {
                throw ToRpc(ex);
            }

            if (!more)
            {
                yield break;
            }

            yield return e.Current;
        }
    }

    private static RpcException ToRpc(RolloutServiceException e) => new(new Status(e.Status, e.Message));
}

/// <summary>A client of k2rl.v1.Rollout over a channel (<see cref="K2RL.Common.Rpc.GrpcChannels"/>): Generate as an async stream.
/// Weights go to the engine through the checkpoint engine (<c>NetworkWeightPublisher</c> to the same address).</summary>
public sealed class RolloutClient(CallInvoker invoker)
{
    private readonly Wire.Rollout.RolloutClient client = new(invoker);

    public RolloutClient(ChannelBase channel)
        : this(channel.CreateCallInvoker())
    {
    }

    /// <summary>The token events, then Finished; leaving the loop early (or <paramref name="ct"/>) cancels the call.</summary>
    public async IAsyncEnumerable<Wire.GenerateEvent> GenerateAsync(Wire.GenerateRequest request, CallOptions options = default,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct = default)
    {
        using var call = client.Generate(request, ct.CanBeCanceled ? options.WithCancellationToken(ct) : options);
        await foreach (var e in call.ResponseStream.ReadAllAsync(ct).ConfigureAwait(false))
        {
            yield return e;
        }
    }

    public Task<Wire.PauseReply> PauseAsync(bool offload = false, CallOptions options = default) =>
        client.PauseAsync(new Wire.PauseRequest { Offload = offload }, options).ResponseAsync;

    public Task<Wire.ResumeReply> ResumeAsync(CallOptions options = default) => client.ResumeAsync(new Wire.ResumeRequest(), options).ResponseAsync;

    public Task<Wire.DrainReply> DrainAsync(CallOptions options = default) => client.DrainAsync(new Wire.DrainRequest(), options).ResponseAsync;

    public Task<Wire.HealthReply> HealthAsync(CallOptions options = default) => client.HealthAsync(new Wire.HealthRequest(), options).ResponseAsync;
}
