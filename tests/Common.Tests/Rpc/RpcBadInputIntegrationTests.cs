using System.Net;
using K2RL.Common.Rpc;
using K2RL.Common.Tests.Rpc.Proto;

namespace K2RL.Common.Tests.Rpc;

/// <summary>Crafted HTTP/2 requests against K2RL's server: each gets a gRPC error status, and the server goes on serving.</summary>
public sealed class RpcBadInputIntegrationTests(RpcServerFixture fx) : IClassFixture<RpcServerFixture>
{
    private static readonly string Echo = TestRpc.Echo.FullName;

    [Fact]
    public async Task A_well_formed_raw_call_succeeds()
    {
        var response = await fx.RawCallAsync(Echo, RpcServerFixture.Frame(new EchoRequest { Text = "raw" }));
        Assert.Equal(HttpStatusCode.OK, response.HttpStatus);
        Assert.Equal("application/grpc", response.ContentType);
        Assert.Equal(StatusCode.OK, response.Status);
        Assert.False(response.TrailersOnly);
        Assert.Equal(0, response.Body[0]);
        Assert.Equal("raw", EchoReply.Parser.ParseFrom(response.Body.AsSpan(5).ToArray()).Text);
    }

    [Theory]
    [InlineData(3)] // inside the 5-byte header
    [InlineData(9)] // inside the message
    public async Task Truncated_frame_is_INTERNAL(int keep)
    {
        byte[] frame = RpcServerFixture.Frame(new EchoRequest { Text = "truncated frame test" });
        var response = await fx.RawCallAsync(Echo, frame[..keep]);
        Assert.Equal(HttpStatusCode.OK, response.HttpStatus);
        Assert.Equal(StatusCode.Internal, response.Status);
        Assert.True(response.TrailersOnly);
        Assert.Contains("truncated", response.Message);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Declared_length_beyond_the_body_is_INTERNAL()
    {
        var response = await fx.RawCallAsync(Echo, RpcServerFixture.Frame([0x0A, 0x01, 0x41], declaredLength: 1000));
        Assert.Equal(StatusCode.Internal, response.Status);
        Assert.Contains("truncated", response.Message);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Malformed_protobuf_is_INTERNAL()
    {
        // Field 1 (string) claims 100 bytes, 2 follow.
        var response = await fx.RawCallAsync(Echo, RpcServerFixture.Frame([0x0A, 100, 0x41, 0x42]));
        Assert.Equal(StatusCode.Internal, response.Status);
        Assert.Contains("malformed", response.Message);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Compressed_flag_without_an_encoding_is_INTERNAL()
    {
        var response = await fx.RawCallAsync(Echo, RpcServerFixture.Frame([0x0A, 0x01, 0x41], flag: 1));
        Assert.Equal(StatusCode.Internal, response.Status);
        Assert.Contains("compressed", response.Message);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Invalid_flag_byte_is_INTERNAL()
    {
        var response = await fx.RawCallAsync(Echo, RpcServerFixture.Frame([0x0A, 0x01, 0x41], flag: 7));
        Assert.Equal(StatusCode.Internal, response.Status);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Unsupported_grpc_encoding_is_UNIMPLEMENTED()
    {
        var response = await fx.RawCallAsync(Echo, RpcServerFixture.Frame(new EchoRequest()), headers: [("grpc-encoding", "gzip")]);
        Assert.Equal(StatusCode.Unimplemented, response.Status);
        Assert.Contains("gzip", response.Message);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Oversized_frame_header_is_RESOURCE_EXHAUSTED_without_reading_the_body()
    {
        var response = await fx.RawCallAsync(Echo, RpcServerFixture.Frame([0x0A, 0x00], declaredLength: int.MaxValue));
        Assert.Equal(StatusCode.ResourceExhausted, response.Status);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Empty_body_for_a_unary_method_is_INTERNAL()
    {
        var response = await fx.RawCallAsync(Echo, []);
        Assert.Equal(StatusCode.Internal, response.Status);
        Assert.Contains("got none", response.Message);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Two_messages_for_a_unary_method_is_INTERNAL()
    {
        byte[] one = RpcServerFixture.Frame(new EchoRequest { Text = "a" });
        var response = await fx.RawCallAsync(Echo, [.. one, .. one]);
        Assert.Equal(StatusCode.Internal, response.Status);
        Assert.Contains("got more", response.Message);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Unknown_method_is_UNIMPLEMENTED_trailers_only()
    {
        var response = await fx.RawCallAsync("/k2rl.test.v1.Nothing/Here", RpcServerFixture.Frame(new EchoRequest()));
        Assert.Equal(HttpStatusCode.OK, response.HttpStatus);
        Assert.Equal(StatusCode.Unimplemented, response.Status);
        Assert.True(response.TrailersOnly);
        Assert.Empty(response.Body);
        await fx.AssertServesAsync();
    }

    [Theory]
    [InlineData("application/json")]
    [InlineData("application/grpc-web")]
    [InlineData("text/plain")]
    public async Task Wrong_content_type_is_HTTP_415_with_a_grpc_status(string contentType)
    {
        var response = await fx.RawCallAsync(Echo, RpcServerFixture.Frame(new EchoRequest()), contentType);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.HttpStatus);
        Assert.Equal(StatusCode.Internal, response.Status);
        Assert.Contains(contentType, response.Message);
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Content_type_with_proto_suffix_is_accepted()
    {
        var response = await fx.RawCallAsync(Echo, RpcServerFixture.Frame(new EchoRequest { Text = "p" }), "application/grpc+proto");
        Assert.Equal(StatusCode.OK, response.Status);
    }

    [Fact]
    public async Task Server_enforces_grpc_timeout_itself()
    {
        var response = await fx.RawCallAsync(
            Echo, RpcServerFixture.Frame(new EchoRequest { Text = "raw-deadline", DelayMs = 60_000 }), headers: [("grpc-timeout", "200m")]);
        Assert.Equal(StatusCode.DeadlineExceeded, response.Status);
        await fx.Service.CancellationSeen("raw-deadline").WaitAsync(TimeSpan.FromSeconds(10));
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Malformed_grpc_timeout_is_INTERNAL()
    {
        var response = await fx.RawCallAsync(Echo, RpcServerFixture.Frame(new EchoRequest()), headers: [("grpc-timeout", "5x")]);
        Assert.Equal(StatusCode.Internal, response.Status);
        Assert.Contains("grpc-timeout", response.Message);
    }
}
