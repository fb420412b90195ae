using K2RL.Gym.Critic.Workbench;
using K2RL.Tests.Shared;

namespace K2RL.Gym.Tests;

/// <summary>
/// Fuzzes the input of <c>k2rl gym judge</c>: one line of the shipped example (docs/examples/judge-input.jsonl) edited
/// from a fixed seed. Each case must load or be refused with a K2RL error naming the file and that line.
/// </summary>
public sealed class JudgeInputFuzzTests
{
    [Fact]
    public void EveryEditedLineLoadsOrIsRefusedNamingTheLine()
    {
        var lines = File.ReadAllLines(Path.Combine(ExternalTools.RepoRoot(), "docs", "examples", "judge-input.jsonl"));
        int cases = Fuzz.Cases(300), loaded = 0;
        var failures = new List<string>();
        for (int c = 0; c < cases && failures.Count < 10; c++)
        {
            var rng = Fuzz.Case(c, "judge-input.jsonl");
            int line = rng.Next(lines.Length);
            var edited = lines.ToArray();
            edited[line] = Fuzz.MutateJson(edited[line], rng, [("rewards", "[1, 0]"), ("tags", "[\"x\"]"), ("responses", "[\"a\"]")]).ReplaceLineEndings(" ");
            bool ok = false;
            string? problem = Fuzz.Check(() =>
            {
                JudgeInputReader.Read(edited, "in.jsonl");
                ok = true;
            }, $"in.jsonl:{line + 1}: ", TimeSpan.FromSeconds(10), 256L << 20);
            if (problem is not null)
            {
                failures.Add($"case {c} (seed {Fuzz.Seed}), line {line + 1}: {problem}\n{edited[line][..Math.Min(edited[line].Length, 2000)]}");
            }

            loaded += ok ? 1 : 0;
        }

        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        Assert.InRange(loaded, 1, cases - 1);
    }
}
