using Google.Protobuf;
using Grpc.Core;
using K2RL.Common.Tests.Rpc.Proto;

namespace K2RL.Common.Tests.Rpc;

/// <summary>
/// What K2RL's gRPC client setup (Grpc.Net.Client over <see cref="K2RL.Common.Rpc.GrpcChannels"/>) must do against any
/// server of the test service: run by <see cref="RpcIntegrationTests"/> against K2RL's server (Grpc.AspNetCore) and by
/// <see cref="InteropIntegrationTests"/> against @grpc/grpc-js's.
/// </summary>
public abstract class RpcClientContract
{
    protected static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    /// <summary>A client of the server under test, whose receive limit is <see cref="RpcServerFixture.Limit"/>.</summary>
    protected abstract TestService.TestServiceClient Client { get; }

    /// <summary>The same channel's call invoker, for methods the generated client does not have.</summary>
    protected abstract CallInvoker Invoker { get; }

    /// <summary>Completes when the server's handler of the call tagged <paramref name="tag"/> has begun its delay.</summary>
    protected abstract Task ServerStartedDelay(string tag);

    /// <summary>Completes when the server's handler of the call tagged <paramref name="tag"/> has seen it cancelled.</summary>
    protected abstract Task ServerSawCancellation(string tag);

    protected static DateTime In(TimeSpan timeout) => DateTime.UtcNow + timeout;

    /// <summary>A normal call succeeds: the server survived whatever came before.</summary>
    protected async Task AssertServesAsync()
    {
        var reply = await Client.EchoAsync(new EchoRequest { Text = "still serving" }, deadline: In(Patience));
        Assert.Equal("still serving", reply.Text);
    }

    [Fact]
    public async Task Unary_round_trips()
    {
        var reply = await Client.EchoAsync(new EchoRequest { Text = "héllo", ReplySize = 1000 });
        Assert.Equal("héllo", reply.Text);
        Assert.Equal(1000, reply.Payload.Length);
    }

    [Fact]
    public async Task Server_streaming_returns_every_message_in_order()
    {
        using var call = Client.Count(new CountRequest { N = 50 });
        var got = await call.ResponseStream.ReadAllAsync().Select(r => r.I).ToListAsync();
        Assert.Equal(Enumerable.Range(0, 50), got);
    }

    [Fact]
    public async Task Server_streaming_with_no_messages_ends_cleanly()
    {
        using var call = Client.Count(new CountRequest { N = 0 });
        Assert.Empty(await call.ResponseStream.ReadAllAsync().ToListAsync());
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task Client_streaming_sums_what_was_sent()
    {
        using var call = Client.Sum();
        for (int i = 1; i <= 100; i++)
        {
            await call.RequestStream.WriteAsync(new SumRequest { Value = i });
        }

        await call.RequestStream.CompleteAsync();
        var reply = await call;
        Assert.Equal(5050, reply.Total);
        Assert.Equal(100, reply.Count);
    }

    [Fact]
    public async Task Client_streaming_error_from_the_server_reaches_the_caller()
    {
        using var call = Client.Sum();
        await call.RequestStream.WriteAsync(new SumRequest { Value = 1 });
        await call.RequestStream.WriteAsync(new SumRequest { Value = -5 });
        var e = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal("negative value -5", e.Status.Detail);
        await AssertServesAsync();
    }

    [Fact]
    public async Task Duplex_interleaves_writes_and_reads()
    {
        using var call = Client.Chat();
        for (int i = 0; i < 5; i++)
        {
            await call.RequestStream.WriteAsync(new EchoRequest { Text = $"m{i}" });
            Assert.True(await call.ResponseStream.MoveNext());
            Assert.Equal($"m{i}", call.ResponseStream.Current.Text);
        }

        await call.RequestStream.CompleteAsync();
        Assert.False(await call.ResponseStream.MoveNext());
    }

    [Fact]
    public async Task Duplex_call_that_failed_keeps_reporting_its_status()
    {
        using var call = Client.Chat();
        await call.RequestStream.WriteAsync(new EchoRequest { FailCode = (int)StatusCode.OutOfRange, FailMessage = "too far" });
        var first = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext());
        Assert.Equal(StatusCode.OutOfRange, first.StatusCode);
        Assert.Equal("too far", first.Status.Detail);
        Assert.Equal(StatusCode.OutOfRange, (await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext())).StatusCode);
        Assert.Equal(StatusCode.OutOfRange, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task Error_status_and_message_reach_the_client_intact()
    {
        const string message = "nope: 100% ✓ \"quoted\"\nnew line";
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client.EchoAsync(
            new EchoRequest { FailCode = (int)StatusCode.FailedPrecondition, FailMessage = message }));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Equal(message, e.Status.Detail);
    }

    [Fact]
    public async Task Error_after_streamed_messages_arrives_in_the_trailers()
    {
        var got = new List<int>();
        using var call = Client.Count(new CountRequest { N = 3, FailCode = (int)StatusCode.Aborted });
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var reply in call.ResponseStream.ReadAllAsync())
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
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client.EchoAsync(
            new EchoRequest { Text = "deadline-unary", DelayMs = 60_000 }, deadline: In(TimeSpan.FromSeconds(1))));
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        await ServerSawCancellation("deadline-unary");
        await AssertServesAsync();
    }

    [Fact]
    public async Task Deadline_applies_to_a_stream_in_progress()
    {
        // The first reply goes at once, the second only after a minute: the deadline falls in between. 5 s, not 1: on a
        // loaded 2-core machine (CI runs the test projects in parallel) the first reply took over a second to arrive.
        await AssertServesAsync(); // warm: the deadline should measure the call, not start-up
        int received = 0;
        using var call = Client.Count(new CountRequest { N = -1, DelayMs = 60_000, Tag = "deadline-stream" }, deadline: In(TimeSpan.FromSeconds(5)));
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var _ in call.ResponseStream.ReadAllAsync())
            {
                received++;
            }
        });
        Assert.True(received == 1, $"received {received} messages before the deadline, expected 1; {e.Message}");
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        await ServerSawCancellation("deadline-stream");
    }

    [Fact]
    public async Task Leaving_a_server_stream_early_cancels_the_handler()
    {
        int received = 0;
        using (var call = Client.Count(new CountRequest { N = -1, DelayMs = 5, Tag = "cancel-stream" }))
        {
            await foreach (var reply in call.ResponseStream.ReadAllAsync())
            {
                Assert.Equal(received, reply.I);
                if (++received == 3)
                {
                    break;
                }
            }
        }

        await ServerSawCancellation("cancel-stream");
        await AssertServesAsync();
    }

    [Fact]
    public async Task Cancelling_the_token_of_a_duplex_call_gives_CANCELLED_and_reaches_the_handler()
    {
        using var cts = new CancellationTokenSource();
        using var call = Client.Chat(cancellationToken: cts.Token);
        await call.RequestStream.WriteAsync(new EchoRequest { Text = "first" });
        Assert.True(await call.ResponseStream.MoveNext());
        Assert.Equal("first", call.ResponseStream.Current.Text);
        await call.RequestStream.WriteAsync(new EchoRequest { Text = "cancel-duplex", DelayMs = 60_000 });
        var read = call.ResponseStream.MoveNext();
        await ServerStartedDelay("cancel-duplex");
        await cts.CancelAsync();
        var e = await Assert.ThrowsAsync<RpcException>(() => read);
        Assert.Equal(StatusCode.Cancelled, e.StatusCode);
        await ServerSawCancellation("cancel-duplex");
        await AssertServesAsync();
    }

    [Fact]
    public async Task Disposing_an_unfinished_client_stream_cancels_the_handler()
    {
        using (var call = Client.Chat())
        {
            await call.RequestStream.WriteAsync(new EchoRequest { Text = "dispose-duplex", DelayMs = 60_000 });
            await ServerStartedDelay("dispose-duplex");
        }

        await ServerSawCancellation("dispose-duplex");
        await AssertServesAsync();
    }

    [Fact]
    public async Task Oversized_request_is_refused_by_the_server_with_RESOURCE_EXHAUSTED()
    {
        var big = new EchoRequest { Text = "big", Payload = ByteString.CopyFrom(new byte[RpcServerFixture.Limit + 1]) };
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client.EchoAsync(big));
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        await AssertServesAsync();
    }

    [Fact]
    public async Task Oversized_request_in_a_duplex_stream_is_refused_by_the_server()
    {
        using var call = Client.Chat();
        await call.RequestStream.WriteAsync(new EchoRequest { Text = "small" });
        Assert.True(await call.ResponseStream.MoveNext());
        Assert.Equal("small", call.ResponseStream.Current.Text);
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await call.RequestStream.WriteAsync(new EchoRequest { Payload = ByteString.CopyFrom(new byte[RpcServerFixture.Limit + 1]) });
            await call.ResponseStream.MoveNext();
        });
        // The server ends the call with RESOURCE_EXHAUSTED and resets the stream. A client still sending the big
        // message's frames can see that reset fail its write (Cancelled) before the status arrives: seen once in CI
        // under load. Either way the stream is refused and the server goes on serving; the unary test above checks
        // the status itself.
        Assert.True(e.StatusCode is StatusCode.ResourceExhausted or StatusCode.Cancelled, $"{e.StatusCode}: {e.Status.Detail}");
        await AssertServesAsync();
    }

    [Fact]
    public async Task Oversized_response_is_refused_by_the_client_with_RESOURCE_EXHAUSTED()
    {
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client.EchoAsync(
            new EchoRequest { Text = "big reply", ReplySize = RpcServerFixture.Limit + 1 }));
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        await AssertServesAsync();
    }

    [Fact]
    public async Task Unknown_method_is_UNIMPLEMENTED()
    {
        var missing = new Method<EchoRequest, EchoReply>(MethodType.Unary, "k2rl.test.v1.TestService", "Missing",
            Marshallers.Create(m => m.ToByteArray(), EchoRequest.Parser.ParseFrom), Marshallers.Create(m => m.ToByteArray(), EchoReply.Parser.ParseFrom));
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await Invoker.AsyncUnaryCall(missing, null, new CallOptions(deadline: In(Patience)), new EchoRequest()));
        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
        await AssertServesAsync();
    }

    [Fact]
    public async Task Many_concurrent_calls_are_multiplexed()
    {
        var calls = Enumerable.Range(0, 200).Select(i => Client.EchoAsync(new EchoRequest { Text = $"c{i}" }).ResponseAsync);
        var replies = await Task.WhenAll(calls);
        Assert.Equal(Enumerable.Range(0, 200).Select(i => $"c{i}"), replies.Select(r => r.Text));
    }
}
