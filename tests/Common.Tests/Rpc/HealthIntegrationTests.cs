using Grpc.Core;
using Grpc.Health.V1;
using K2RL.Common.Rpc;
using ServingStatus = Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;

namespace K2RL.Common.Tests.Rpc;

/// <summary>Every <see cref="GrpcServer"/> serves the standard grpc.health.v1.Health (what Kubernetes gRPC probes call).</summary>
public sealed class HealthIntegrationTests
{
    [Fact]
    public async Task Check_answers_serving_and_not_found_and_watch_streams_changes()
    {
        await using var server = await GrpcServer.Create().StartAsync();
        using var channel = GrpcChannels.Create(server.Address);
        var client = new Health.HealthClient(channel);
        DateTime Deadline() => DateTime.UtcNow.AddSeconds(30);

        Assert.Equal(ServingStatus.Serving, (await client.CheckAsync(new HealthCheckRequest(), deadline: Deadline())).Status);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await client.CheckAsync(new HealthCheckRequest { Service = "k2rl.v1.Gym" }));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);

        using var watch = client.Watch(new HealthCheckRequest { Service = "k2rl.v1.Gym" }, deadline: Deadline());
        Assert.True(await watch.ResponseStream.MoveNext());
        Assert.Equal(ServingStatus.ServiceUnknown, watch.ResponseStream.Current.Status);
        server.Health.SetStatus("k2rl.v1.Gym", ServingStatus.NotServing);
        Assert.True(await watch.ResponseStream.MoveNext());
        Assert.Equal(ServingStatus.NotServing, watch.ResponseStream.Current.Status);
        server.Health.SetStatus("k2rl.v1.Gym", ServingStatus.Serving);
        Assert.True(await watch.ResponseStream.MoveNext());
        Assert.Equal(ServingStatus.Serving, watch.ResponseStream.Current.Status);
        Assert.Equal(ServingStatus.Serving, (await client.CheckAsync(new HealthCheckRequest { Service = "k2rl.v1.Gym" }, deadline: Deadline())).Status);
    }
}
