using K2RL.Tests.Shared;
using K2RL.Trainer.Pretraining;

namespace K2RL.Cli.Tests;

/// <summary>Every job file shipped in configs/jobs and its subfolders (experiments/) passes the job checks `k2rl pretrain` runs before any work.</summary>
public class ShippedJobFilesTests
{
    [Fact]
    public void EveryShippedJobFileIsValid()
    {
        string root = ExternalTools.RepoRoot();
        var kinds = SyntheticCorpus.FromGym().Kinds;
        var files = Directory.GetFiles(Path.Combine(root, "configs", "jobs"), "*.yaml", SearchOption.AllDirectories);
        // the current jobs and the experiments' jobs (configs/jobs/experiments) both
        Assert.Contains(files, f => Path.GetFileName(Path.GetDirectoryName(f)) == "experiments");
        Assert.Contains(files, f => Path.GetFileName(f) == "pretrain-nano.yaml");
        foreach (string file in files)
        {
            // the files name their model relative to the repository root, where the README runs them
            string text = File.ReadAllText(file).Replace("model: configs/", $"model: {root}/configs/");
            var job = JobConfig.Parse(text, file, kinds);
            Assert.True(job.Steps > 0, file);
        }

        var main = JobConfig.Parse(File.ReadAllText(Path.Combine(root, "configs/jobs/pretrain-nano.yaml")).Replace("model: configs/", $"model: {root}/configs/"),
            "pretrain-nano.yaml", kinds);
        Assert.Equal(4, main.GradAccumSteps);
        Assert.Equal(500, main.Steps);
    }
}
