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

    public static TheoryData<string, byte[], StatusCode, string> BadFrames() => new()
    {
        { "declared length beyond the body", RpcServerFixture.Frame([0x0A, 0x01, 0x41], declaredLength: 1000), StatusCode.Internal, "truncated" },
        // Field 1 (string) claims 100 bytes, 2 follow.
        { "malformed protobuf", RpcServerFixture.Frame([0x0A, 100, 0x41, 0x42]), StatusCode.Internal, "malformed" },
        { "compressed flag without an encoding", RpcServerFixture.Frame([0x0A, 0x01, 0x41], flag: 1), StatusCode.Internal, "compressed" },
        { "invalid flag byte", RpcServerFixture.Frame([0x0A, 0x01, 0x41], flag: 7), StatusCode.Internal, "flag is 7" },
        { "oversized frame header", RpcServerFixture.Frame([0x0A, 0x00], declaredLength: int.MaxValue), StatusCode.ResourceExhausted, "exceeds the limit" },
        { "empty body for a unary method", [], StatusCode.Internal, "got none" },
        { "two messages for a unary method", [.. TwoEchoes()], StatusCode.Internal, "got more" },
    };

    [Theory]
    [MemberData(nameof(BadFrames))]
    public async Task Bad_request_body_gets_an_error_status(string what, byte[] body, StatusCode expected, string detail)
    {
        var response = await fx.RawCallAsync(Echo, body);
        Assert.True(expected == response.Status, $"{what}: expected {expected}, got {response.Status} ({response.Message})");
        Assert.Contains(detail, response.Message);
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
    public async Task Method_other_than_POST_is_HTTP_405_with_a_grpc_status()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(fx.Server.Address, Echo))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        using var response = await fx.Raw.SendAsync(request);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
        Assert.Equal("13", response.Headers.GetValues("grpc-status").Single());
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
            Echo, RpcServerFixture.Frame(new EchoRequest { Text = "raw-deadline", DelayMs = 60_000 }), headers: [("grpc-timeout", "1S")]);
        Assert.Equal(StatusCode.DeadlineExceeded, response.Status);
        await fx.Service.CancellationSeen("raw-deadline").WaitAsync(TimeSpan.FromSeconds(30));
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Malformed_grpc_timeout_is_INTERNAL()
    {
        var response = await fx.RawCallAsync(Echo, RpcServerFixture.Frame(new EchoRequest()), headers: [("grpc-timeout", "5x")]);
        Assert.Equal(StatusCode.Internal, response.Status);
        Assert.Contains("grpc-timeout", response.Message);
    }

    private static byte[] TwoEchoes()
    {
        byte[] one = RpcServerFixture.Frame(new EchoRequest { Text = "a" });
        return [.. one, .. one];
    }
}
