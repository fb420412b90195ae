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
        int cases = Fuzz.Cases(300), loaded = 0;
        var failures = new List<string>();
        for (int c = 0; c < cases && failures.Count < 10; c++)
        {
            var rng = Fuzz.Case(c, name);
            string edited = text;
            for (int e = 0, n = 1 + rng.Next(3); e < n; e++)
            {
                edited = Fuzz.MutateYaml(edited, rng);
            }

            bool ok = false;
            string? problem = Fuzz.Check(() =>
            {
                RubricLoader.Parse(edited, file);
                ok = true;
            }, file, TimeSpan.FromSeconds(10), 256L << 20);
            if (problem is not null)
            {
                failures.Add($"case {c} (seed {Fuzz.Seed}): {problem}\n--- the file:\n{edited[..Math.Min(edited.Length, 3000)]}");
            }

            loaded += ok ? 1 : 0;
        }

        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        Assert.InRange(loaded, 1, cases - 1);
    }
}
