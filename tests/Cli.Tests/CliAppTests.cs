namespace K2RL.Cli.Tests;

public class CliAppTests
{
    [Fact]
    public async Task UnknownCommandFailsWithAMessageOnStderr()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = await CliApp.RunAsync(["no-such-command"], new CliContext(output, error));
        Assert.NotEqual(0, code);
        Assert.Contains("no-such-command", error.ToString());
        Assert.Equal("", output.ToString());
    }

    [Fact]
    public async Task HelpListsTheCommandGroups()
    {
        var output = new StringWriter();
        int code = await CliApp.RunAsync(["--help"], new CliContext(output, new StringWriter()));
        Assert.Equal(0, code);
        Assert.Contains("k2rl", output.ToString());
    }
}
