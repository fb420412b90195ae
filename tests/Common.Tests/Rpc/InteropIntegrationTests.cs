using System.Text.Json;
using Grpc.Core;
using K2RL.Common.Tests.Rpc.Proto;

namespace K2RL.Common.Tests.Rpc;

/// <summary>
/// K2RL's gRPC stacks against @grpc/grpc-js: K2RL's client (Grpc.Net.Client) calling a JS server (the inherited
/// contract) and a JS client calling K2RL's server (Grpc.AspNetCore on Kestrel; the tests below).
/// </summary>
public sealed class InteropIntegrationTests(InteropFixture fx) : RpcClientContract, IClassFixture<InteropFixture>
{
    protected override TestService.TestServiceClient Client => fx.JsServerClient;

    protected override CallInvoker Invoker => fx.JsServerChannel.CreateCallInvoker();

    protected override Task ServerStartedDelay(string tag) => fx.JsServerSaid("started " + tag);

    protected override Task ServerSawCancellation(string tag) => fx.JsServerSaid("cancelled " + tag);

    [Fact]
    public void Js_client_unary()
    {
        var r = fx.JsClient("unary");
        Assert.Equal(0, r.GetProperty("code").GetInt32());
        Assert.Equal("from js ✓", r.GetProperty("text").GetString());
        Assert.Equal(10, r.GetProperty("payloadLength").GetInt32());
    }

    [Fact]
    public void Js_client_server_streaming()
    {
        var r = fx.JsClient("serverStream");
        Assert.Equal(0, r.GetProperty("code").GetInt32());
        Assert.Equal([0, 1, 2, 3, 4], Ints(r.GetProperty("items")));
    }

    [Fact]
    public void Js_client_sees_an_error_after_streamed_messages()
    {
        var r = fx.JsClient("streamError");
        Assert.Equal((int)StatusCode.Aborted, r.GetProperty("code").GetInt32());
        Assert.Equal([0, 1], Ints(r.GetProperty("items")));
        Assert.Equal("failed after 2", r.GetProperty("details").GetString());
    }

    [Fact]
    public void Js_client_client_streaming()
    {
        var r = fx.JsClient("clientStream");
        Assert.Equal(0, r.GetProperty("code").GetInt32());
        Assert.Equal(10, r.GetProperty("total").GetInt64());
        Assert.Equal(4, r.GetProperty("count").GetInt32());
    }

    [Fact]
    public void Js_client_bidi_ping_pong()
    {
        var r = fx.JsClient("bidi");
        Assert.Equal(0, r.GetProperty("code").GetInt32());
        Assert.Equal(["a", "b", "c"], r.GetProperty("items").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task Js_client_deadline_expires_and_the_handler_sees_cancellation()
    {
        var r = fx.JsClient("deadline");
        Assert.Equal((int)StatusCode.DeadlineExceeded, r.GetProperty("code").GetInt32());
        await fx.Service.CancellationSeen("js-deadline").WaitAsync(Patience);
    }

    [Fact]
    public void Js_client_gets_status_code_and_percent_encoded_message()
    {
        var r = fx.JsClient("error");
        Assert.Equal((int)StatusCode.FailedPrecondition, r.GetProperty("code").GetInt32());
        Assert.Equal("nope: 100% ✓", r.GetProperty("details").GetString());
    }

    [Fact]
    public void Js_client_oversized_request_is_RESOURCE_EXHAUSTED()
    {
        var r = fx.JsClient("oversize");
        Assert.Equal((int)StatusCode.ResourceExhausted, r.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task Js_client_cancel_reaches_the_handler()
    {
        var r = fx.JsClient("cancel");
        Assert.Equal((int)StatusCode.Cancelled, r.GetProperty("code").GetInt32());
        Assert.True(r.GetProperty("received").GetInt32() >= 3);
        await fx.Service.CancellationSeen("js-cancel").WaitAsync(Patience);
    }

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();
}
