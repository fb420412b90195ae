using K2RL.Cli;

namespace K2RL.CheckpointEngine.Tests;

public sealed class CkptReceiveCommandTests
{
    [Theory]
    [InlineData("error: give --shm NAME or --listen HOST:PORT", "ckpt", "receive")]
    [InlineData("error: --listen 'nowhere' is not HOST:PORT", "ckpt", "receive", "--listen", "nowhere")]
    [InlineData("error: shared-memory name 'a/b' must be", "ckpt", "receive", "--shm", "a/b")]
    [InlineData("error: --data-lane-port 'fast' is not a port (0-65535; 0: any free one) or 'off'", "ckpt", "receive", "--listen", "127.0.0.1:0", "--data-lane-port", "fast")]
    [InlineData("error: --data-lane-port '70000' is not a port", "ckpt", "receive", "--listen", "127.0.0.1:0", "--data-lane-port", "70000")]
    [InlineData("error: --data-lane-port '-1' is not a port", "rollout-worker", "--redis", "redis://127.0.0.1:1", "--weights", "net", "--listen", "127.0.0.1:0", "--data-lane-port", "-1")]
    public async Task BadOptionsAreOneClearLineOnStderrAndNothingOnStdout(string expected, params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await CliApp.RunAsync(args, new CliContext(stdout, stderr));
        Assert.NotEqual(0, code);
        Assert.Equal("", stdout.ToString());
        Assert.StartsWith(expected, stderr.ToString());
    }
}
