using K2RL.Gym;
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
        var kinds = SyntheticCorpus.CreateDefault().Kinds;
        var files = Directory.GetFiles(Path.Combine(root, "configs", "jobs"), "*.yaml", SearchOption.AllDirectories);
        // the current jobs and the experiments' jobs (configs/jobs/experiments) both
        Assert.Contains(files, f => Path.GetFileName(Path.GetDirectoryName(f)) == "experiments");
        Assert.Contains(files, f => Path.GetFileName(f) == "pretrain-nano.yaml");
        var envs = K2RL.Gym.GymRegistry.CreateDefault().Environments.Select(e => e.Name).ToArray();
        Assert.Contains(files, f => Path.GetFileName(f) == "rl-nano.yaml");
        Assert.Contains(files, f => Path.GetFileName(f) == "sft-nano.yaml");
        foreach (string file in files)
        {
            // the files name their model relative to the repository root, where the README runs them
            string text = File.ReadAllText(file).Replace("model: configs/", $"model: {root}/configs/");
            if (Path.GetFileName(file).StartsWith("rl-", StringComparison.Ordinal))
            {
                // RL jobs: every check `k2rl rl` runs, with the base (init_from) replaced by a folder that exists here, as `k2rl demo` does
                var rl = K2RL.Trainer.Rl.RlJobConfig.Parse(text, file, envs, kinds, initFrom: root);
                Assert.True(rl.Iterations > 0, file);
                continue;
            }

            if (Path.GetFileName(file).StartsWith("synth-", StringComparison.Ordinal))
            {
                // synthesis jobs: every check `k2rl synth` runs before any work
                var synth = K2RL.Gym.Synthesis.SynthJob.Parse(text, file, K2RL.Gym.Synthesis.SynthesisPipeline.KnownEnvs(K2RL.Gym.GymRegistry.CreateDefault()));
                Assert.True(synth.Trajectories > 0, file);
                continue;
            }

            if (Path.GetFileName(file).StartsWith("sft-", StringComparison.Ordinal))
            {
                // SFT jobs: every check `k2rl sft` runs on the job file, with the base and the dataset replaced as `k2rl demo` does
                using var nano = new RandomCheckpoint(K2RL.Model.ModelConfig.Load(Path.Combine(root, "configs/models/k2-nano.json")), 1, "k2rl-sftbase-");
                var sft = K2RL.Trainer.Sft.SftJobConfig.Parse(text, file, envs, initFrom: nano.Dir, data: file);
                Assert.True(sft.Eval.Envs.Count > 0, file);
                continue;
            }

            var job = JobConfig.Parse(text, file, kinds);
            Assert.True(job.Steps > 0, file);
        }

        var main = JobConfig.Parse(File.ReadAllText(Path.Combine(root, "configs/jobs/pretrain-nano.yaml")).Replace("model: configs/", $"model: {root}/configs/"),
            "pretrain-nano.yaml", kinds);
        Assert.Equal(4, main.GradAccumSteps);
        Assert.Equal(1000, main.Steps);
    }
}
