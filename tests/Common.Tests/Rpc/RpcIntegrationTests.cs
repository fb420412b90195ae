using Google.Protobuf;
using K2RL.Common.Rpc;
using K2RL.Common.Tests.Rpc.Proto;

namespace K2RL.Common.Tests.Rpc;

/// <summary>K2RL's client against K2RL's server, in process, over real HTTP/2 on loopback: the contract, and what only K2RL's side has.</summary>
public sealed class RpcIntegrationTests(RpcServerFixture fx) : RpcClientContract, IClassFixture<RpcServerFixture>
{
    protected override RpcClient Client => fx.Client;

    protected override Task ServerStartedDelay(string tag) => fx.Service.DelayStarted(tag).WaitAsync(Patience);

    protected override Task ServerSawCancellation(string tag) => fx.Service.CancellationSeen(tag).WaitAsync(Patience);

    [Fact]
    public void Server_binds_loopback_by_default_and_reports_the_port()
    {
        Assert.Equal("127.0.0.1", new RpcServerOptions().Host);
        Assert.Equal("127.0.0.1", fx.Server.Address.Host);
        Assert.NotEqual(0, fx.Server.Port);
        Assert.Equal(fx.Server.Port, fx.Server.Address.Port);
        Assert.Contains("/k2rl.test.v1.TestService/Chat", fx.Server.Methods);
    }

    [Fact]
    public async Task Expired_deadline_fails_without_calling()
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => Client.UnaryAsync(
            TestRpc.Echo, new EchoRequest { Text = "x" }, new CallOptions(TimeSpan.Zero)));
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
    }

    [Fact]
    public async Task Send_limit_fails_locally_before_sending()
    {
        using var client = new RpcClient(fx.Server.Address, new RpcClientOptions { MaxSendMessageSize = 100 });
        var e = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(
            TestRpc.Echo, new EchoRequest { Payload = ByteString.CopyFrom(new byte[101]) }));
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.Contains("send limit", e.Detail);
    }

    [Fact]
    public async Task Handler_exception_becomes_UNKNOWN_and_the_server_goes_on()
    {
        // fail_code 2 is thrown as RpcException; a plain exception comes from a negative reply size.
        var e = await Assert.ThrowsAsync<RpcException>(() => Client.UnaryAsync(TestRpc.Echo, new EchoRequest { ReplySize = -1 }));
        Assert.Equal(StatusCode.Unknown, e.StatusCode);
        Assert.Contains("OverflowException", e.Detail);
        await AssertServesAsync();
    }

    [Fact]
    public async Task Headers_reach_the_handler_context()
    {
        string? seen = null;
        var method = RpcMethod.Create<EchoRequest, EchoReply>("k2rl.test.v1.Headers", "Get");
        await using var server = new RpcServer();
        server.AddUnary(method, (request, context) =>
        {
            seen = context.RequestHeaders.GetValueOrDefault("x-k2rl-run");
            Assert.NotNull(context.Deadline);
            return Task.FromResult(new EchoReply { Text = context.Method });
        });
        await server.StartAsync();
        using var client = new RpcClient(server.Address);
        var reply = await client.UnaryAsync(method, new EchoRequest(), new CallOptions(
            TimeSpan.FromSeconds(30), Headers: new Dictionary<string, string> { ["x-k2rl-run"] = "run-7" }));
        Assert.Equal("/k2rl.test.v1.Headers/Get", reply.Text);
        Assert.Equal("run-7", seen);
    }

    [Fact]
    public async Task Calling_a_port_with_no_server_is_UNAVAILABLE()
    {
        int port;
        await using (var server = new RpcServer())
        {
            await server.StartAsync();
            port = server.Port;
        }

        using var client = new RpcClient(new Uri($"http://127.0.0.1:{port}/"));
        var e = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(TestRpc.Echo, new EchoRequest()));
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
    }
}
