using K2RL.Common.Rpc;
using K2RL.Protos.Health;
using ServingStatus = K2RL.Protos.Health.HealthCheckResponse.Types.ServingStatus;

namespace K2RL.Common.Tests.Rpc;

public sealed class HealthIntegrationTests
{
    [Fact]
    public async Task Check_answers_serving_and_not_found_and_watch_streams_changes()
    {
        var health = new HealthService();
        await using var server = new RpcServer();
        server.AddService(health);
        await server.StartAsync();
        using var client = new RpcClient(server.Address);
        var timeout = new CallOptions(TimeSpan.FromSeconds(30));

        Assert.Equal(ServingStatus.Serving, (await client.UnaryAsync(HealthService.Check, new HealthCheckRequest(), timeout)).Status);
        var e = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(HealthService.Check, new HealthCheckRequest { Service = "k2rl.v1.Gym" }));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);

        await using var watch = client.ServerStreamingAsync(HealthService.Watch, new HealthCheckRequest { Service = "k2rl.v1.Gym" }, timeout)
            .GetAsyncEnumerator();
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(ServingStatus.ServiceUnknown, watch.Current.Status);
        health.SetStatus("k2rl.v1.Gym", ServingStatus.NotServing);
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(ServingStatus.NotServing, watch.Current.Status);
        health.SetStatus("k2rl.v1.Gym", ServingStatus.Serving);
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(ServingStatus.Serving, watch.Current.Status);
        Assert.Equal(ServingStatus.Serving, (await client.UnaryAsync(HealthService.Check, new HealthCheckRequest { Service = "k2rl.v1.Gym" }, timeout)).Status);
    }
}
