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
        int cases = Fuzz.Cases(300);
        var (failures, parsed) = Fuzz.YamlCases(text, file, name, cases, edited =>
        {
            if (name.StartsWith("rl-", StringComparison.Ordinal))
            {
                RlJobConfig.Parse(edited, file, envs, kinds, initFrom: root);
            }
            else
            {
                JobConfig.Parse(edited, file, kinds);
            }
        });
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        Assert.InRange(parsed, 1, cases - 1);
    }
}
