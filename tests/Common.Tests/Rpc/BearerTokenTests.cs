using Grpc.Core;
using K2RL.Common.Rpc;

namespace K2RL.Common.Tests.Rpc;

/// <summary>The control token: where it is read from, what it accepts, and HOST:PORT's loopback rule.</summary>
public sealed class BearerTokenTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("k2rl-token-").FullName;

    [Fact]
    public void AcceptsOnlyTheExactTokenAsABearer()
    {
        var token = Write("s3cret-token\n");
        Assert.Equal("s3cret-token", token.Value);
        Assert.True(token.Accepts(token.Headers()));
        Assert.True(token.Accepts(new Metadata { { "authorization", "bearer s3cret-token" } }));
        Assert.False(token.Accepts([]));
        Assert.False(token.Accepts(new Metadata { { "authorization", "Bearer s3cret-toke" } }));
        Assert.False(token.Accepts(new Metadata { { "authorization", "Bearer s3cret-token2" } }));
        Assert.False(token.Accepts(new Metadata { { "authorization", "Basic s3cret-token" } }));
        Assert.False(token.Accepts(new Metadata { { "authorization", "s3cret-token" } }));
    }

    [Fact]
    public void AnEmptyOrMissingTokenFileIsAClearError()
    {
        var empty = Assert.Throws<ConfigException>(() => Write("\n  \n"));
        Assert.Contains("holds no token", empty.Message);
        string missing = Path.Combine(dir, "absent");
        var e = Assert.Throws<ConfigException>(() => BearerToken.Load(missing, "--token-file"));
        Assert.Contains("--token-file " + missing, e.Message);
    }

    [Theory]
    [InlineData("127.0.0.1:7070", "127.0.0.1", 7070, true)]
    [InlineData("localhost:0", "localhost", 0, true)]
    [InlineData("127.0.0.2:1", "127.0.0.2", 1, true)]
    [InlineData("[::1]:9", "::1", 9, true)]
    [InlineData("0.0.0.0:7070", "0.0.0.0", 7070, false)]
    [InlineData("*:7070", "*", 7070, false)]
    [InlineData("10.1.2.3:80", "10.1.2.3", 80, false)]
    public void HostPortParsesAndKnowsLoopback(string text, string host, int port, bool loopback)
    {
        var hp = HostPort.Parse(text, "--control");
        Assert.Equal((host, port), (hp.Host, hp.Port));
        Assert.Equal(loopback, hp.IsLoopback);
    }

    [Theory]
    [InlineData("7070")]
    [InlineData(":7070")]
    [InlineData("127.0.0.1:x")]
    [InlineData("127.0.0.1:70000")]
    public void ABadHostPortNamesTheOption(string text)
    {
        var e = Assert.Throws<ConfigException>(() => HostPort.Parse(text, "--metrics"));
        Assert.Contains($"--metrics '{text}'", e.Message);
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private BearerToken Write(string text)
    {
        string path = Path.Combine(dir, Guid.NewGuid().ToString("N"));
        File.WriteAllText(path, text);
        return BearerToken.Load(path, "--token-file")!;
    }
}
