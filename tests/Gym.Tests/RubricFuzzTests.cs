using K2RL.Gym.Critic;
using K2RL.Tests.Shared;

namespace K2RL.Gym.Tests;

/// <summary>
/// Fuzzes rubric files (issue 14): the shipped core and prescriptive rubrics, edited line by line from a fixed seed.
/// Each case must load or be refused with a K2RL error naming the file, within 10 s and 256 MiB.
/// </summary>
public sealed class RubricFuzzTests
{
    [Theory]
    [InlineData("core.yaml")]
    [InlineData("prescriptive.yaml")]
    public void EveryEditedRubricFileLoadsOrIsRefusedNamingTheFile(string name)
    {
        string text = File.ReadAllText(Path.Combine(ExternalTools.RepoRoot(), "configs", "rubrics", name));
        string file = Path.Combine(Path.GetTempPath(), $"k2rl-fuzz-{Guid.NewGuid():N}-{name}");
        int cases = Fuzz.Cases(300);
        var (failures, loaded) = Fuzz.YamlCases(text, file, name, cases, edited => RubricLoader.Parse(edited, file));
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        Assert.InRange(loaded, 1, cases - 1);
    }
}
