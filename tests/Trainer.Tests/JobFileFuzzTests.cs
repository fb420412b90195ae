using K2RL.Gym;
using K2RL.Tests.Shared;
using K2RL.Trainer.Pretraining;
using K2RL.Trainer.Rl;

namespace K2RL.Trainer.Tests;

/// <summary>
/// Fuzzes the job files (issue 14): the shipped pretraining and RL jobs, edited line by line from a fixed seed (values
/// of every type and size, lines dropped, repeated, re-indented or swapped, anchors expanded by aliases, bytes cut or
/// flipped). Each case must parse or be refused with a K2RL error naming the file, within 10 s and 256 MiB.
/// </summary>
public sealed class JobFileFuzzTests
{
    [Theory]
    [InlineData("pretrain-nano.yaml")]
    [InlineData("rl-nano.yaml")]
    public void EveryEditedJobParsesOrIsRefusedNamingTheFile(string name)
    {
        string root = ExternalTools.RepoRoot();
        string text = File.ReadAllText(Path.Combine(root, "configs", "jobs", name)).Replace("model: configs/", $"model: {root}/configs/");
        var kinds = SyntheticCorpus.CreateDefault().Kinds;
        var envs = GymRegistry.CreateDefault().Environments.Select(e => e.Name).ToArray();
        string file = Path.Combine(Path.GetTempPath(), $"k2rl-fuzz-{Guid.NewGuid():N}-{name}");
        int cases = Fuzz.Cases(300), parsed = 0;
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
                if (name.StartsWith("rl-", StringComparison.Ordinal))
                {
                    RlJobConfig.Parse(edited, file, envs, kinds, initFrom: root);
                }
                else
                {
                    JobConfig.Parse(edited, file, kinds);
                }

                ok = true;
            }, file, TimeSpan.FromSeconds(10), 256L << 20);
            if (problem is not null)
            {
                failures.Add($"case {c} (seed {Fuzz.Seed}): {problem}\n--- the file:\n{edited[..Math.Min(edited.Length, 3000)]}");
            }

            parsed += ok ? 1 : 0;
        }

        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        Assert.InRange(parsed, 1, cases - 1);
    }
}
