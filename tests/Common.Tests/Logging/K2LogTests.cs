using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Common.Logging;
using Serilog.Events;

namespace K2RL.Common.Tests.Logging;

public sealed class K2LogTests
{
    [Fact]
    public void TheRunLogIsCompactJsonOneEventPerLine()
    {
        string file = Path.Combine(Path.GetTempPath(), $"k2rl-log-{Guid.NewGuid():N}", "run.clef");
        try
        {
            using (var log = K2Log.Create(LogEventLevel.Debug, file))
            {
                log.Debug("step {Step} loss {Loss}", 3, 0.25);
                log.Warning("disk at {Percent}%", 91);
            }

            var lines = File.ReadAllLines(file).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
            Assert.Equal(2, lines.Count);
            Assert.Equal("step 3 loss 0.25", (string)lines[0]["@m"]!);
            Assert.Equal(3, (int)lines[0]["Step"]!);
            Assert.Equal("Debug", (string)lines[0]["@l"]!);
            Assert.Equal("Warning", (string)lines[1]["@l"]!);
            Assert.True(DateTimeOffset.TryParse((string)lines[1]["@t"]!, out _));
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(file)!, recursive: true);
        }
    }

    [Theory]
    [InlineData(false, null, LogEventLevel.Information)]
    [InlineData(true, null, LogEventLevel.Debug)]
    [InlineData(true, "Error", LogEventLevel.Debug)]
    [InlineData(false, "warning", LogEventLevel.Warning)]
    [InlineData(false, " Verbose ", LogEventLevel.Verbose)]
    public void TheLevelComesFromVerboseThenTheVariable(bool verbose, string? variable, LogEventLevel expected) =>
        Assert.Equal(expected, K2Log.Level(verbose, variable));

    [Theory]
    [InlineData("loud")]
    [InlineData("7")]
    public void AnUnknownLevelNamesTheVariable(string variable) =>
        Assert.Contains(K2Log.LevelVariable, Assert.Throws<ConfigException>(() => K2Log.Level(false, variable)).Message);
}
