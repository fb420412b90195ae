using K2RL.Cli;

namespace K2RL.CheckpointEngine.Tests;

public sealed class CkptReceiveCommandTests
{
    [Theory]
    [InlineData("error: give --shm NAME or --listen HOST:PORT", "ckpt", "receive")]
    [InlineData("error: --listen 'nowhere' is not HOST:PORT", "ckpt", "receive", "--listen", "nowhere")]
    [InlineData("error: shared-memory name 'a/b' must be", "ckpt", "receive", "--shm", "a/b")]
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
