using Google.Protobuf;
using Grpc.Core;
using K2RL.Common.Rpc;
using K2RL.Common.Tests.Rpc.Proto;

namespace K2RL.Common.Tests.Rpc;

/// <summary>K2RL's client setup against K2RL's server, in process, over real HTTP/2 on loopback: the contract, and what only K2RL's side has.</summary>
public sealed class RpcIntegrationTests(RpcServerFixture fx) : RpcClientContract, IClassFixture<RpcServerFixture>
{
    protected override TestService.TestServiceClient Client => fx.Client;

    protected override CallInvoker Invoker => fx.Channel.CreateCallInvoker();

    protected override Task ServerStartedDelay(string tag) => fx.Service.DelayStarted(tag).WaitAsync(Patience);

    protected override Task ServerSawCancellation(string tag) => fx.Service.CancellationSeen(tag).WaitAsync(Patience);

    [Fact]
    public void Server_binds_loopback_by_default_and_reports_the_port()
    {
        Assert.Equal("127.0.0.1", new GrpcServerOptions().Host);
        Assert.Equal("127.0.0.1", fx.Server.Address.Host);
        Assert.NotEqual(0, fx.Server.Port);
        Assert.Equal(fx.Server.Port, fx.Server.Address.Port);
    }

    [Fact]
    public async Task Server_refuses_a_host_that_is_not_an_address()
    {
        var e = await Assert.ThrowsAsync<ConfigException>(() => GrpcServer.Create(new GrpcServerOptions { Host = "example.com" }).StartAsync());
        Assert.Contains("example.com", e.Message);
    }

    [Fact]
    public async Task Expired_deadline_fails_without_calling()
    {
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client.EchoAsync(
            new EchoRequest { Text = "x" }, deadline: DateTime.UtcNow.AddSeconds(-1)));
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
    }

    [Fact]
    public async Task Send_limit_fails_locally_before_sending()
    {
        using var channel = GrpcChannels.Create(fx.Server.Address, new GrpcClientOptions { MaxSendMessageSize = 100 });
        var client = new TestService.TestServiceClient(channel);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await client.EchoAsync(
            new EchoRequest { Payload = ByteString.CopyFrom(new byte[101]) }));
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
    }

    [Fact]
    public async Task Handler_exception_becomes_UNKNOWN_and_the_server_goes_on()
    {
        // fail_code 2 is thrown as RpcException; a plain exception comes from a negative reply size.
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client.EchoAsync(new EchoRequest { ReplySize = -1 }));
        Assert.Equal(StatusCode.Unknown, e.StatusCode);
        Assert.Contains("OverflowException", e.Status.Detail);
        await AssertServesAsync();
    }

    [Fact]
    public async Task Stopping_the_server_cancels_the_calls_in_flight()
    {
        var service = new TestServiceImpl();
        var server = await GrpcServer.Create().AddService(service).StartAsync();
        using var channel = GrpcChannels.Create(server.Address);
        var call = new TestService.TestServiceClient(channel).EchoAsync(new EchoRequest { Text = "stop", DelayMs = 60_000 });
        await service.DelayStarted("stop").WaitAsync(Patience);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        await server.DisposeAsync();
        await service.CancellationSeen("stop").WaitAsync(Patience);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), watch.Elapsed.ToString());
        await Assert.ThrowsAsync<RpcException>(async () => await call);
    }

    [Fact]
    public async Task Calling_a_port_with_no_server_is_UNAVAILABLE()
    {
        int port;
        await using (var server = await GrpcServer.Create().StartAsync())
        {
            port = server.Port;
        }

        using var channel = GrpcChannels.Create(new Uri($"http://127.0.0.1:{port}/"));
        var e = await Assert.ThrowsAsync<RpcException>(async () => await new TestService.TestServiceClient(channel).EchoAsync(new EchoRequest()));
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
    }
}
