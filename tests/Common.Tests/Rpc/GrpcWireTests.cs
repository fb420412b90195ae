using K2RL.Common.Rpc;

namespace K2RL.Common.Tests.Rpc;

public sealed class GrpcWireTests
{
    [Theory]
    [InlineData("1H", 3600_0000000L)]
    [InlineData("2M", 120_0000000L)]
    [InlineData("3S", 3_0000000L)]
    [InlineData("250m", 250_0000L)]
    [InlineData("7u", 70L)]
    [InlineData("150n", 2L)] // rounded up to whole 100 ns ticks
    [InlineData("99999999H", 99999999L * 3600_0000000L)]
    public void Parses_every_timeout_unit(string header, long ticks)
    {
        Assert.True(GrpcWire.TryParseTimeout(header, out var timeout));
        Assert.Equal(ticks, timeout.Ticks);
    }

    [Theory]
    [InlineData("")]
    [InlineData("S")]
    [InlineData("10")]
    [InlineData("10s")]
    [InlineData("-1S")]
    [InlineData("123456789S")] // nine digits
    public void Rejects_malformed_timeouts(string header) => Assert.False(GrpcWire.TryParseTimeout(header, out _));

    [Theory]
    [InlineData(250_0000L, "250000u")]
    [InlineData(1L, "1u")]
    [InlineData(3600_0000000L, "3600000m")]
    [InlineData(30L * 24 * 3600_0000000L, "2592000S")]
    public void Encodes_timeouts_in_at_most_eight_digits(long ticks, string expected)
    {
        string header = GrpcWire.EncodeTimeout(TimeSpan.FromTicks(ticks));
        Assert.Equal(expected, header);
        Assert.True(GrpcWire.TryParseTimeout(header, out var back));
        Assert.True(back.Ticks >= ticks, "never shorter than asked");
    }

    [Theory]
    [InlineData("plain ascii", "plain ascii")]
    [InlineData("100%", "100%25")]
    [InlineData("line\nbreak", "line%0Abreak")]
    [InlineData("✓", "%E2%9C%93")]
    public void Percent_encodes_status_messages(string message, string encoded)
    {
        Assert.Equal(encoded, GrpcWire.EncodeMessage(message));
        Assert.Equal(message, GrpcWire.DecodeMessage(encoded));
    }

    [Fact]
    public void Keeps_malformed_escapes_when_decoding() => Assert.Equal("50%zz%", GrpcWire.DecodeMessage("50%zz%"));

    [Theory]
    [InlineData("application/grpc", true)]
    [InlineData("application/grpc+proto", true)]
    [InlineData("application/grpc; charset=utf-8", true)]
    [InlineData("application/grpc+json", false)]
    [InlineData("application/grpc-web", false)]
    [InlineData(null, false)]
    public void Recognises_grpc_content_types(string? contentType, bool expected) =>
        Assert.Equal(expected, GrpcWire.IsGrpcContentType(contentType));

    [Theory]
    [InlineData(400, StatusCode.Internal)]
    [InlineData(401, StatusCode.Unauthenticated)]
    [InlineData(403, StatusCode.PermissionDenied)]
    [InlineData(404, StatusCode.Unimplemented)]
    [InlineData(429, StatusCode.Unavailable)]
    [InlineData(503, StatusCode.Unavailable)]
    [InlineData(500, StatusCode.Unknown)]
    public void Maps_http_statuses(int http, StatusCode expected) => Assert.Equal(expected, GrpcWire.FromHttpStatus(http));

    [Theory]
    [InlineData("/k2rl.v1.Gym/Reset", true)]
    [InlineData("k2rl.v1.Gym/Reset", false)]
    [InlineData("/k2rl.v1.Gym/", false)]
    [InlineData("//Reset", false)]
    [InlineData("/a/b/c", false)]
    public void Checks_method_names(string name, bool valid)
    {
        if (valid)
        {
            Assert.Equal(name, RpcMethod.CheckName(name));
        }
        else
        {
            Assert.Throws<ArgumentException>(() => RpcMethod.CheckName(name));
        }
    }
}
