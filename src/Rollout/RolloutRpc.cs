using K2RL.Common.Rpc;
using Pb = K2RL.Protos.V1;

namespace K2RL.Rollout;

/// <summary>The methods of k2rl.v1.Rollout (protos/k2rl/v1/rollout.proto), shared by server and client.</summary>
public static class RolloutRpc
{
    // One method table per proto service, deliberately alike: GymProtocol is k2rl.v1.Gym's.
    public const string ServiceName = "k2rl.v1.Rollout";

    public static readonly RpcMethod<Pb.GenerateRequest, Pb.GenerateEvent> Generate = RpcMethod.Create<Pb.GenerateRequest, Pb.GenerateEvent>(ServiceName, "Generate");
    public static readonly RpcMethod<Pb.UpdateWeightsRequest, Pb.UpdateWeightsReply> UpdateWeights = RpcMethod.Create<Pb.UpdateWeightsRequest, Pb.UpdateWeightsReply>(ServiceName, "UpdateWeights");
    public static readonly RpcMethod<Pb.PauseRequest, Pb.PauseReply> Pause = RpcMethod.Create<Pb.PauseRequest, Pb.PauseReply>(ServiceName, "Pause");
    public static readonly RpcMethod<Pb.ResumeRequest, Pb.ResumeReply> Resume = RpcMethod.Create<Pb.ResumeRequest, Pb.ResumeReply>(ServiceName, "Resume");
    public static readonly RpcMethod<Pb.DrainRequest, Pb.DrainReply> Drain = RpcMethod.Create<Pb.DrainRequest, Pb.DrainReply>(ServiceName, "Drain");
    public static readonly RpcMethod<Pb.HealthRequest, Pb.HealthReply> Health = RpcMethod.Create<Pb.HealthRequest, Pb.HealthReply>(ServiceName, "Health");
}

/// <summary>Puts a <see cref="RolloutService"/> on an <see cref="RpcServer"/>; its failures become gRPC statuses.</summary>
public sealed class RolloutRpcService(RolloutService service) : IRpcService
{
    public void Register(RpcServer server)
    {
        server.AddServerStreaming(RolloutRpc.Generate, async (request, responses, context) =>
        {
            await foreach (var e in Mapped(service.GenerateAsync(request, context.CancellationToken)).ConfigureAwait(false))
            {
                await responses.WriteAsync(e).ConfigureAwait(false);
            }
        });
        server.AddUnary(RolloutRpc.UpdateWeights, (request, _) => Call(() => Task.FromResult(service.UpdateWeights(request))));
        server.AddUnary(RolloutRpc.Pause, (request, _) => Call(() => service.PauseAsync(request)));
        server.AddUnary(RolloutRpc.Resume, (request, _) => Call(() => Task.FromResult(service.Resume(request))));
        server.AddUnary(RolloutRpc.Drain, (request, context) => Call(() => service.DrainAsync(request, context.CancellationToken)));
        server.AddUnary(RolloutRpc.Health, (request, _) => Task.FromResult(service.Health(request)));
    }

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

    private static async IAsyncEnumerable<Pb.GenerateEvent> Mapped(IAsyncEnumerable<Pb.GenerateEvent> events)
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

    private static RpcException ToRpc(RolloutServiceException e) => new(e.Status, e.Message);
}

/// <summary>A typed client for k2rl.v1.Rollout.</summary>
public sealed class RolloutClient(RpcClient rpc)
{
    public IAsyncEnumerable<Pb.GenerateEvent> GenerateAsync(Pb.GenerateRequest request, CallOptions options = default, CancellationToken ct = default) =>
        rpc.ServerStreamingAsync(RolloutRpc.Generate, request, options, ct);

    public Task<Pb.UpdateWeightsReply> UpdateWeightsAsync(long version, float[] parameters, CallOptions options = default)
    {
        var bytes = new byte[parameters.Length * sizeof(float)];
        Buffer.BlockCopy(parameters, 0, bytes, 0, bytes.Length);
        return rpc.UnaryAsync(RolloutRpc.UpdateWeights,
            new Pb.UpdateWeightsRequest { Version = version, Parameters = Google.Protobuf.UnsafeByteOperations.UnsafeWrap(bytes) }, options);
    }

    public Task<Pb.PauseReply> PauseAsync(bool offload = false, CallOptions options = default) =>
        rpc.UnaryAsync(RolloutRpc.Pause, new Pb.PauseRequest { Offload = offload }, options);

    public Task<Pb.ResumeReply> ResumeAsync(CallOptions options = default) => rpc.UnaryAsync(RolloutRpc.Resume, new Pb.ResumeRequest(), options);

    public Task<Pb.DrainReply> DrainAsync(CallOptions options = default) => rpc.UnaryAsync(RolloutRpc.Drain, new Pb.DrainRequest(), options);

    public Task<Pb.HealthReply> HealthAsync(CallOptions options = default) => rpc.UnaryAsync(RolloutRpc.Health, new Pb.HealthRequest(), options);
}
