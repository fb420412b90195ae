using K2RL.Gym;
using K2RL.Tests.Shared;
using K2RL.Trainer.Pretraining;
using K2RL.Trainer.Rl;

namespace K2RL.Trainer.Tests;

/// <summary>
/// Fuzzes the job files (issue 14): the shipped pretraining, RL and SFT jobs, edited line by line from a fixed seed (values
/// of every type and size, lines dropped, repeated, re-indented or swapped, anchors expanded by aliases, bytes cut or
/// flipped). Each case must parse or be refused with a K2RL error naming the file, within 10 s and 256 MiB.
/// </summary>
public sealed class JobFileFuzzTests
{
    [Theory]
    [InlineData("pretrain-nano.yaml")]
    [InlineData("rl-nano.yaml")]
    [InlineData("sft-nano.yaml")]
    public void EveryEditedJobParsesOrIsRefusedNamingTheFile(string name)
    {
        string root = ExternalTools.RepoRoot();
        string text = File.ReadAllText(Path.Combine(root, "configs", "jobs", name)).Replace("model: configs/", $"model: {root}/configs/");
        var kinds = SyntheticCorpus.CreateDefault().Kinds;
        var envs = GymRegistry.CreateDefault().Environments.Select(e => e.Name).ToArray();
        string file = Path.Combine(Path.GetTempPath(), $"k2rl-fuzz-{Guid.NewGuid():N}-{name}");
        using var sftBase = new TestUtil.TempDir();   // the SFT job's base: a small checkpoint whose context holds seq_len
        var baseConfig = TestUtil.TestConfig() with { VocabSize = 272, MaxPositionEmbeddings = 1024 };
        K2RL.Model.IO.ModelCheckpoint.Save(sftBase.Path, baseConfig, new float[new K2RL.Model.ParameterLayout(baseConfig).TotalLength]);
        text = text.Replace("path: data/sft", $"path: {root}/configs/jobs");
        int cases = Fuzz.Cases(300);
        var (failures, parsed) = Fuzz.YamlCases(text, file, name, cases, edited =>
        {
            if (name.StartsWith("sft-", StringComparison.Ordinal))
            {
                K2RL.Trainer.Sft.SftJobConfig.Parse(edited, file, envs, initFrom: sftBase.Path);
            }
            else if (name.StartsWith("rl-", StringComparison.Ordinal))
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
