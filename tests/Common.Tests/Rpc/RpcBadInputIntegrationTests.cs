using System.Net;
using System.Net.Sockets;
using Grpc.Core;
using K2RL.Common.Tests.Rpc.Proto;

namespace K2RL.Common.Tests.Rpc;

/// <summary>
/// Crafted HTTP/2 requests against K2RL's server (Grpc.AspNetCore on Kestrel): each gets a gRPC error status, and the
/// server goes on serving. Bytes that are not HTTP/2 at all close their connection, and the server goes on serving.
/// </summary>
public sealed class RpcBadInputIntegrationTests(RpcServerFixture fx) : IClassFixture<RpcServerFixture>
{
    private const string Echo = "/k2rl.test.v1.TestService/Echo";

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
        Assert.Equal("Incomplete message.", response.Message);
        await fx.AssertServesAsync();
    }

    // What Grpc.AspNetCore answers (the messages are its own). It reports a request it cannot parse or whose flag byte
    // is invalid as UNKNOWN, with the exception, where K2RL's former transport said INTERNAL.
    public static TheoryData<string, byte[], StatusCode, string> BadFrames() => new()
    {
        { "declared length beyond the body", RpcServerFixture.Frame([0x0A, 0x01, 0x41], declaredLength: 1000), StatusCode.Internal, "Incomplete message" },
        // Field 1 (string) claims 100 bytes, 2 follow.
        { "malformed protobuf", RpcServerFixture.Frame([0x0A, 100, 0x41, 0x42]), StatusCode.Unknown, "InvalidProtocolBufferException" },
        { "compressed flag without an encoding", RpcServerFixture.Frame([0x0A, 0x01, 0x41], flag: 1), StatusCode.Internal, "compressed" },
        { "invalid flag byte", RpcServerFixture.Frame([0x0A, 0x01, 0x41], flag: 7), StatusCode.Unknown, "Unexpected compressed flag value" },
        { "oversized frame header", RpcServerFixture.Frame([0x0A, 0x00], declaredLength: int.MaxValue), StatusCode.ResourceExhausted, "exceeds the maximum configured message size" },
        { "empty body for a unary method", [], StatusCode.Internal, "Incomplete message" },
        { "two messages for a unary method", [.. TwoEchoes()], StatusCode.Internal, "Additional data after the message" },
    };

    [Theory]
    [MemberData(nameof(BadFrames))]
    public async Task Bad_request_body_gets_an_error_status(string what, byte[] body, StatusCode expected, string detail)
    {
        var response = await fx.RawCallAsync(Echo, body);
        Assert.True(expected == response.Status, $"{what}: expected {expected}, got {response.Status} ({response.Message})");
        Assert.True(response.Message?.Contains(detail, StringComparison.Ordinal) == true, $"{what}: '{response.Message}' lacks '{detail}'");
        await fx.AssertServesAsync();
    }

    [Fact]
    public async Task Unsupported_grpc_encoding_is_UNIMPLEMENTED()
    {
        // A message compressed with an encoding the server lacks (gzip it has; snappy it does not).
        var response = await fx.RawCallAsync(Echo, RpcServerFixture.Frame([0x0A, 0x01, 0x41], flag: 1), headers: [("grpc-encoding", "snappy")]);
        Assert.Equal(StatusCode.Unimplemented, response.Status);
        Assert.Contains("snappy", response.Message);
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
    public async Task Method_other_than_POST_finds_no_endpoint()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(fx.Server.Address, Echo))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        using var response = await fx.Raw.SendAsync(request);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
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
    public async Task Malformed_grpc_timeout_is_ignored()
    {
        // Grpc.AspNetCore serves the call without a deadline (and logs the header at debug level).
        var response = await fx.RawCallAsync(Echo, RpcServerFixture.Frame(new EchoRequest { Text = "t" }), headers: [("grpc-timeout", "5x")]);
        Assert.Equal(StatusCode.OK, response.Status);
    }

    private static byte[] TwoEchoes()
    {
        byte[] one = RpcServerFixture.Frame(new EchoRequest { Text = "a" });
        return [.. one, .. one];
    }

    [Theory]
    [InlineData("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")] // HTTP/1.1 to an HTTP/2-only endpoint
    [InlineData("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\u0000\u0000\u0004\u00ff\u00ff\u00ff\u00ff\u00ff\u00ff garbage after the preface")]
    public async Task Garbage_bytes_close_the_connection_and_the_server_goes_on(string garbage)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, fx.Server.Port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(System.Text.Encoding.Latin1.GetBytes(garbage));
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            while (await stream.ReadAsync(buffer, timeout.Token) > 0)
            {
                // Kestrel may answer with a GOAWAY before it closes.
            }
        }
        catch (IOException)
        {
            // A reset connection is closed too.
        }

        Assert.False(timeout.IsCancellationRequested, "the server kept the connection open");
        await fx.AssertServesAsync();
    }
}
