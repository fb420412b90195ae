using K2RL.Common.Config;

namespace K2RL.Common.Tests.Config;

/// <summary>Errors name the line and column of the node at fault, also where YamlDotNet gives a node no position.</summary>
public class YamlReaderPositionTests
{
    [Fact]
    public void AMappingInsideAFlowListIsReportedAtItsOwnPosition()
    {
        var r = YamlReader.Parse("a: 1\neval:\n  difficulties: [1, b: 2]\n", "job.yaml");
        var e = Assert.Throws<ConfigException>(() => r.Section("eval").StrList("difficulties", []));
        Assert.StartsWith("job.yaml:3:21:", e.Message);   // the "b" of "b: 2", not 1:1
        Assert.Contains("must be a list of strings, got a mapping", e.Message);
    }

    [Fact]
    public void ANestedBlockMappingKeepsItsPosition()
    {
        var r = YamlReader.Parse("eval:\n  difficulties:\n    - x: 1\n", "job.yaml");
        var e = Assert.Throws<ConfigException>(() => r.Section("eval").StrList("difficulties", []));
        Assert.StartsWith("job.yaml:3:7:", e.Message);
    }
}
