using K2RL.Protos.Health;
using ServingStatus = K2RL.Protos.Health.HealthCheckResponse.Types.ServingStatus;

namespace K2RL.Common.Rpc;

/// <summary>
/// The standard gRPC health service (grpc.health.v1.Health): Check answers the current status of a
/// service ("" is the whole server, SERVING from the start), Watch streams it and every change.
/// A service marks itself NOT_SERVING while it cannot take calls (loading weights, draining).
/// </summary>
public sealed class HealthService : IRpcService
{
    public const string ServiceName = "grpc.health.v1.Health";

    public static readonly RpcMethod<HealthCheckRequest, HealthCheckResponse> Check =
        RpcMethod.Create<HealthCheckRequest, HealthCheckResponse>(ServiceName, "Check");

    public static readonly RpcMethod<HealthCheckRequest, HealthCheckResponse> Watch =
        RpcMethod.Create<HealthCheckRequest, HealthCheckResponse>(ServiceName, "Watch");

    private readonly object gate = new();
    private readonly Dictionary<string, ServingStatus> statuses = new(StringComparer.Ordinal) { [""] = ServingStatus.Serving };
    private TaskCompletionSource changed = NewSignal();

    public void Register(RpcServer server)
    {
        server.AddUnary(Check, CheckAsync).AddServerStreaming(Watch, WatchAsync);
    }

    /// <summary>Sets the status of <paramref name="service"/> ("" for the whole server) and tells the watchers.</summary>
    public void SetStatus(string service, ServingStatus status)
    {
        TaskCompletionSource signal;
        lock (gate)
        {
            statuses[service] = status;
            signal = changed;
            changed = NewSignal();
        }

        signal.TrySetResult();
    }

    private Task<HealthCheckResponse> CheckAsync(HealthCheckRequest request, ServerCallContext context)
    {
        var (status, _) = Current(request.Service);
        return status == ServingStatus.ServiceUnknown
            ? throw new RpcException(StatusCode.NotFound, $"unknown service '{request.Service}'")
            : Task.FromResult(new HealthCheckResponse { Status = status });
    }

    private async Task WatchAsync(HealthCheckRequest request, IServerStreamWriter<HealthCheckResponse> responses, ServerCallContext context)
    {
        ServingStatus? sent = null;
        while (true)
        {
            var (status, next) = Current(request.Service);
            if (status != sent)
            {
                await responses.WriteAsync(new HealthCheckResponse { Status = status });
                sent = status;
            }

            await next.WaitAsync(context.CancellationToken);
        }
    }

    private (ServingStatus Status, Task Changed) Current(string service)
    {
        lock (gate)
        {
            return (statuses.GetValueOrDefault(service, ServingStatus.ServiceUnknown), changed.Task);
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
