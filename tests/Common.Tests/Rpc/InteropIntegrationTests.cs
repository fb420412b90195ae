using System.Text.Json;
using K2RL.Common.Rpc;
using K2RL.Common.Tests.Rpc.Proto;

namespace K2RL.Common.Tests.Rpc;

/// <summary>K2RL's transport against @grpc/grpc-js: a JS client calling K2RL's server, K2RL's client calling a JS server.</summary>
public sealed class InteropIntegrationTests(InteropFixture fx) : IClassFixture<InteropFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    private RpcClient Client => fx.JsServerClient;

    // ---- a JS client calling K2RL's server ----

    [Fact]
    public void Js_client_unary()
    {
        var r = fx.RunJsClient("unary");
        Assert.Equal(0, r.GetProperty("code").GetInt32());
        Assert.Equal("from js ✓", r.GetProperty("text").GetString());
        Assert.Equal(10, r.GetProperty("payloadLength").GetInt32());
    }

    [Fact]
    public void Js_client_server_streaming()
    {
        var r = fx.RunJsClient("serverStream");
        Assert.Equal(0, r.GetProperty("code").GetInt32());
        Assert.Equal([0, 1, 2, 3, 4], Ints(r.GetProperty("items")));
    }

    [Fact]
    public void Js_client_sees_an_error_after_streamed_messages()
    {
        var r = fx.RunJsClient("streamError");
        Assert.Equal((int)StatusCode.Aborted, r.GetProperty("code").GetInt32());
        Assert.Equal([0, 1], Ints(r.GetProperty("items")));
        Assert.Equal("failed after 2", r.GetProperty("details").GetString());
    }

    [Fact]
    public void Js_client_client_streaming()
    {
        var r = fx.RunJsClient("clientStream");
        Assert.Equal(0, r.GetProperty("code").GetInt32());
        Assert.Equal(10, r.GetProperty("total").GetInt64());
        Assert.Equal(4, r.GetProperty("count").GetInt32());
    }

    [Fact]
    public void Js_client_bidi_ping_pong()
    {
        var r = fx.RunJsClient("bidi");
        Assert.Equal(0, r.GetProperty("code").GetInt32());
        Assert.Equal(["a", "b", "c"], r.GetProperty("items").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task Js_client_deadline_expires_and_the_handler_sees_cancellation()
    {
        var r = fx.RunJsClient("deadline");
        Assert.Equal((int)StatusCode.DeadlineExceeded, r.GetProperty("code").GetInt32());
        await fx.Service.CancellationSeen("js-deadline").WaitAsync(Patience);
    }

    [Fact]
    public void Js_client_gets_status_code_and_percent_encoded_message()
    {
        var r = fx.RunJsClient("error");
        Assert.Equal((int)StatusCode.FailedPrecondition, r.GetProperty("code").GetInt32());
        Assert.Equal("nope: 100% ✓", r.GetProperty("details").GetString());
    }

    [Fact]
    public void Js_client_oversized_request_is_RESOURCE_EXHAUSTED()
    {
        var r = fx.RunJsClient("oversize");
        Assert.Equal((int)StatusCode.ResourceExhausted, r.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task Js_client_cancel_reaches_the_handler()
    {
        var r = fx.RunJsClient("cancel");
        Assert.Equal((int)StatusCode.Cancelled, r.GetProperty("code").GetInt32());
        Assert.True(r.GetProperty("received").GetInt32() >= 3);
        await fx.Service.CancellationSeen("js-cancel").WaitAsync(Patience);
    }

    // ---- K2RL's client calling a JS server ----

    [Fact]
    public async Task Unary_to_js()
    {
        var reply = await Client.UnaryAsync(TestRpc.Echo, new EchoRequest { Text = "to js ✓", ReplySize = 3 });
        Assert.Equal("to js ✓", reply.Text);
        Assert.Equal(3, reply.Payload.Length);
    }

    [Fact]
    public async Task Server_streaming_from_js()
    {
        var got = new List<int>();
        await foreach (var reply in Client.ServerStreamingAsync(TestRpc.Count, new CountRequest { N = 20 }))
        {
            got.Add(reply.I);
        }

        Assert.Equal(Enumerable.Range(0, 20), got);
    }

    [Fact]
    public async Task Error_after_streamed_messages_from_js()
    {
        var got = new List<int>();
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var reply in Client.ServerStreamingAsync(TestRpc.Count, new CountRequest { N = 2, FailCode = (int)StatusCode.Aborted }))
            {
                got.Add(reply.I);
            }
        });
        Assert.Equal(StatusCode.Aborted, e.StatusCode);
        Assert.Equal([0, 1], got);
    }

    [Fact]
    public async Task Client_streaming_to_js()
    {
        using var call = Client.ClientStreaming(TestRpc.Sum);
        foreach (long v in new long[] { 5, 6, 7 })
        {
            await call.WriteAsync(new SumRequest { Value = v });
        }

        var reply = await call.CompleteAsync();
        Assert.Equal(18, reply.Total);
        Assert.Equal(3, reply.Count);
    }

    [Fact]
    public async Task Duplex_with_js()
    {
        using var call = Client.Duplex(TestRpc.Chat);
        foreach (string text in new[] { "x", "y", "z" })
        {
            await call.WriteAsync(new EchoRequest { Text = text });
            Assert.Equal(text, (await call.ReadAsync())?.Text);
        }

        call.CompleteRequest();
        Assert.Null(await call.ReadAsync());
    }

    [Fact]
    public async Task Error_status_from_js()
    {
        const string message = "refused: 50% ✓\nsecond line";
        var e = await Assert.ThrowsAsync<RpcException>(() => Client.UnaryAsync(
            TestRpc.Echo, new EchoRequest { FailCode = (int)StatusCode.PermissionDenied, FailMessage = message }));
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.Equal(message, e.Detail);
    }

    [Fact]
    public async Task Deadline_against_js_is_DEADLINE_EXCEEDED_and_js_sees_it()
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => Client.UnaryAsync(
            TestRpc.Echo, new EchoRequest { Text = "k2-deadline", DelayMs = 60_000 }, new CallOptions(TimeSpan.FromMilliseconds(300))));
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        await fx.JsServerSaid("cancelled k2-deadline");
    }

    [Fact]
    public async Task Leaving_a_js_stream_early_cancels_it_on_the_js_side()
    {
        int received = 0;
        await foreach (var _ in Client.ServerStreamingAsync(TestRpc.Count, new CountRequest { N = -1, DelayMs = 5, Tag = "k2-cancel" }))
        {
            if (++received == 3)
            {
                break;
            }
        }

        await fx.JsServerSaid("cancelled k2-cancel");
    }

    [Fact]
    public async Task Oversized_response_from_js_is_RESOURCE_EXHAUSTED()
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => Client.UnaryAsync(
            TestRpc.Echo, new EchoRequest { Text = "big", ReplySize = RpcServerFixture.Limit + 1 }));
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.Equal("to js", (await Client.UnaryAsync(TestRpc.Echo, new EchoRequest { Text = "to js" })).Text);
    }

    [Fact]
    public async Task Unknown_method_on_js_is_UNIMPLEMENTED()
    {
        var missing = RpcMethod.Create<EchoRequest, EchoReply>(TestRpc.Service, "Missing");
        var e = await Assert.ThrowsAsync<RpcException>(() => Client.UnaryAsync(missing, new EchoRequest()));
        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
    }

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();
}
