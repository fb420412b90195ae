using Google.Protobuf;
using K2RL.Common.Rpc;
using K2RL.Common.Tests.Rpc.Proto;

namespace K2RL.Common.Tests.Rpc;

/// <summary>K2RL's client against K2RL's server, in process, over real HTTP/2 on loopback.</summary>
public sealed class RpcIntegrationTests(RpcServerFixture fx) : IClassFixture<RpcServerFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    private RpcClient Client => fx.Client;

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
    public async Task Unary_round_trips()
    {
        var reply = await Client.UnaryAsync(TestRpc.Echo, new EchoRequest { Text = "héllo", ReplySize = 1000 });
        Assert.Equal("héllo", reply.Text);
        Assert.Equal(1000, reply.Payload.Length);
    }

    [Fact]
    public async Task Server_streaming_returns_every_message_in_order()
    {
        var got = new List<int>();
        await foreach (var reply in Client.ServerStreamingAsync(TestRpc.Count, new CountRequest { N = 50 }))
        {
            got.Add(reply.I);
        }

        Assert.Equal(Enumerable.Range(0, 50), got);
    }

    [Fact]
    public async Task Server_streaming_with_no_messages_ends_cleanly()
    {
        var got = new List<int>();
        await foreach (var reply in Client.ServerStreamingAsync(TestRpc.Count, new CountRequest { N = 0 }))
        {
            got.Add(reply.I);
        }

        Assert.Empty(got);
    }

    [Fact]
    public async Task Client_streaming_sums_what_was_sent()
    {
        using var call = Client.ClientStreaming(TestRpc.Sum);
        for (int i = 1; i <= 100; i++)
        {
            await call.WriteAsync(new SumRequest { Value = i });
        }

        var reply = await call.CompleteAsync();
        Assert.Equal(5050, reply.Total);
        Assert.Equal(100, reply.Count);
    }

    [Fact]
    public async Task Client_streaming_error_from_the_server_reaches_the_caller()
    {
        using var call = Client.ClientStreaming(TestRpc.Sum);
        await call.WriteAsync(new SumRequest { Value = 1 });
        await call.WriteAsync(new SumRequest { Value = -5 });
        var e = await Assert.ThrowsAsync<RpcException>(call.CompleteAsync);
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal("negative value -5", e.Detail);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Duplex_interleaves_writes_and_reads()
    {
        using var call = Client.Duplex(TestRpc.Chat);
        for (int i = 0; i < 5; i++)
        {
            await call.WriteAsync(new EchoRequest { Text = $"m{i}" });
            var reply = await call.ReadAsync();
            Assert.Equal($"m{i}", reply?.Text);
        }

        call.CompleteRequest();
        Assert.Null(await call.ReadAsync());
    }

    [Fact]
    public async Task Error_status_and_message_reach_the_client_intact()
    {
        const string message = "nope: 100% ✓ \"quoted\"\nnew line";
        var e = await Assert.ThrowsAsync<RpcException>(() => Client.UnaryAsync(
            TestRpc.Echo, new EchoRequest { FailCode = (int)StatusCode.FailedPrecondition, FailMessage = message }));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Equal(message, e.Detail);
        Assert.Equal(TestRpc.Echo.FullName, e.Method);
    }

    [Fact]
    public async Task Error_after_streamed_messages_arrives_in_the_trailers()
    {
        var got = new List<int>();
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var reply in Client.ServerStreamingAsync(TestRpc.Count, new CountRequest { N = 3, FailCode = (int)StatusCode.Aborted }))
            {
                got.Add(reply.I);
            }
        });
        Assert.Equal([0, 1, 2], got);
        Assert.Equal(StatusCode.Aborted, e.StatusCode);
    }

    [Fact]
    public async Task Deadline_expires_with_DEADLINE_EXCEEDED_and_the_handler_sees_cancellation()
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => Client.UnaryAsync(
            TestRpc.Echo, new EchoRequest { Text = "deadline-unary", DelayMs = 60_000 }, new CallOptions(TimeSpan.FromMilliseconds(300))));
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        await fx.Service.CancellationSeen("deadline-unary").WaitAsync(Patience);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Deadline_applies_to_a_stream_in_progress()
    {
        int received = 0;
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var _ in Client.ServerStreamingAsync(
                TestRpc.Count, new CountRequest { N = -1, DelayMs = 20, Tag = "deadline-stream" }, new CallOptions(TimeSpan.FromMilliseconds(1500))))
            {
                received++;
            }
        });
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        Assert.True(received > 0, "some messages arrive before the deadline");
        await fx.Service.CancellationSeen("deadline-stream").WaitAsync(Patience);
    }

    [Fact]
    public async Task Expired_deadline_fails_without_calling()
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => Client.UnaryAsync(
            TestRpc.Echo, new EchoRequest { Text = "x" }, new CallOptions(TimeSpan.Zero)));
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
    }

    [Fact]
    public async Task Leaving_a_server_stream_early_cancels_the_handler()
    {
        int received = 0;
        await foreach (var reply in Client.ServerStreamingAsync(TestRpc.Count, new CountRequest { N = -1, DelayMs = 5, Tag = "cancel-stream" }))
        {
            Assert.Equal(received, reply.I);
            if (++received == 3)
            {
                break;
            }
        }

        await fx.Service.CancellationSeen("cancel-stream").WaitAsync(Patience);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Cancelling_the_token_of_a_duplex_call_gives_CANCELLED_and_reaches_the_handler()
    {
        using var cts = new CancellationTokenSource();
        using var call = Client.Duplex(TestRpc.Chat, new CallOptions(CancellationToken: cts.Token));
        await call.WriteAsync(new EchoRequest { Text = "first" });
        Assert.Equal("first", (await call.ReadAsync())?.Text);
        await call.WriteAsync(new EchoRequest { Text = "cancel-duplex", DelayMs = 60_000 });
        var read = call.ReadAsync();
        await fx.Service.DelayStarted("cancel-duplex").WaitAsync(Patience);
        await cts.CancelAsync();
        var e = await Assert.ThrowsAsync<RpcException>(() => read);
        Assert.Equal(StatusCode.Cancelled, e.StatusCode);
        await fx.Service.CancellationSeen("cancel-duplex").WaitAsync(Patience);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Disposing_an_unfinished_client_stream_cancels_the_handler()
    {
        using (var call = Client.Duplex(TestRpc.Chat))
        {
            await call.WriteAsync(new EchoRequest { Text = "dispose-duplex", DelayMs = 60_000 });
            await fx.Service.DelayStarted("dispose-duplex").WaitAsync(Patience);
        }

        await fx.Service.CancellationSeen("dispose-duplex").WaitAsync(Patience);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Oversized_request_is_refused_by_the_server_with_RESOURCE_EXHAUSTED()
    {
        var big = new EchoRequest { Text = "big", Payload = ByteString.CopyFrom(new byte[RpcServerFixture.Limit + 1]) };
        var e = await Assert.ThrowsAsync<RpcException>(() => Client.UnaryAsync(TestRpc.Echo, big));
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.Contains("exceeds the limit", e.Detail);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Oversized_request_in_a_duplex_stream_is_refused_by_the_server()
    {
        using var call = Client.Duplex(TestRpc.Chat);
        await call.WriteAsync(new EchoRequest { Text = "small" });
        Assert.Equal("small", (await call.ReadAsync())?.Text);
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await call.WriteAsync(new EchoRequest { Payload = ByteString.CopyFrom(new byte[RpcServerFixture.Limit + 1]) });
            await call.ReadAsync();
        });
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Oversized_response_is_refused_by_the_client_with_RESOURCE_EXHAUSTED()
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => Client.UnaryAsync(
            TestRpc.Echo, new EchoRequest { Text = "big reply", ReplySize = RpcServerFixture.Limit + 1 }));
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        await fx.AssertServesAsync();
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
    public async Task Unknown_method_is_UNIMPLEMENTED()
    {
        var missing = RpcMethod.Create<EchoRequest, EchoReply>(TestRpc.Service, "Missing");
        var e = await Assert.ThrowsAsync<RpcException>(() => Client.UnaryAsync(missing, new EchoRequest()));
        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
        Assert.Contains("/k2rl.test.v1.TestService/Missing", e.Detail);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Handler_exception_becomes_UNKNOWN_and_the_server_goes_on()
    {
        // fail_code 2 is thrown as RpcException; a plain exception comes from a negative reply size.
        var e = await Assert.ThrowsAsync<RpcException>(() => Client.UnaryAsync(TestRpc.Echo, new EchoRequest { ReplySize = -1 }));
        Assert.Equal(StatusCode.Unknown, e.StatusCode);
        Assert.Contains("OverflowException", e.Detail);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Many_concurrent_calls_are_multiplexed()
    {
        var calls = Enumerable.Range(0, 200).Select(i => Client.UnaryAsync(TestRpc.Echo, new EchoRequest { Text = $"c{i}" }));
        var replies = await Task.WhenAll(calls);
        Assert.Equal(Enumerable.Range(0, 200).Select(i => $"c{i}"), replies.Select(r => r.Text));
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
