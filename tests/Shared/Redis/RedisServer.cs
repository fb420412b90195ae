using K2RL.Common.Redis;

namespace K2RL.Tests.Shared;

/// <summary>
/// A real redis-server for a test (<see cref="RedisServerProcess"/>: a free loopback port, a temp directory, AOF on):
/// Debian's binary, installed as .ci/run does when missing, else the test fails saying to install it.
/// </summary>
public sealed class RedisServer : IDisposable
{
    private readonly RedisServerProcess server = new(ExternalTools.Require("redis-server", "redis-server"));

    public string Url => server.Url;

    public void Start() => server.Start();

    public void Stop() => server.Stop();

    public void Restart() => server.Restart();

    public void Dispose() => server.Dispose();
}
