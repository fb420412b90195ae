using K2RL.Common;
using K2RL.Trainer.Pretraining;

namespace K2RL.Trainer.Tests;

public class JobConfigTests
{
    internal static (string Path, TestUtil.TempDir Dir) Write(string body)
    {
        var dir = new TestUtil.TempDir();
        var cfg = TestUtil.TestConfig() with { VocabSize = 272 };
        File.WriteAllText(Path.Combine(dir.Path, "model.json"), cfg.ToJson());
        string path = Path.Combine(dir.Path, "job.yaml");
        File.WriteAllText(path, "model: model.json\n" + body);
        return (path, dir);
    }

    internal static ConfigException Reject(string body)
    {
        var (path, dir) = Write(body);
        using (dir)
        {
            return Assert.Throws<ConfigException>(() => JobConfig.Load(path, PretrainLoopTests.Corpus.Kinds));
        }
    }

    [Fact]
    public void ValidJob_ParsesEveryField()
    {
        var (path, dir) = Write("""
            seed: 42
            batch_size: 4
            seq_len: 32
            steps: 50
            optimizer:
              kind: adamw
              lr: 0.003
              grad_clip: 0.5
            schedule:
              kind: cosine
              warmup_steps: 5
              min_lr_ratio: 0.05
            balance:
              bias_gamma: 0.002
            data:
              synthetic: [rev]
              max_difficulty: 3
            grad_accum_steps: 6
            """);
        using (dir)
        {
            var job = JobConfig.Load(path, PretrainLoopTests.Corpus.Kinds);
            Assert.Equal(42UL, job.Seed);
            Assert.Equal(6, job.GradAccumSteps);
            Assert.Equal((4, 32, 50), (job.BatchSize, job.SeqLen, job.Steps));
            Assert.Equal("adamw", job.Optimizer.Kind);
            Assert.False(job.Optimizer.UsesMuon);
            Assert.Equal(0.003f, job.Optimizer.Lr);
            Assert.Equal("cosine", job.Schedule.Kind);
            Assert.Equal(0.002f, job.BiasGamma);
            Assert.Equal(["rev"], job.Data.SyntheticTasks);
            Assert.Equal(272, job.Model.VocabSize);
        }
    }

    [Fact]
    public void UnknownKey_IsRejectedWithItsLine()
    {
        var e = Reject("seed: 1\nbatch_sise: 4\n");
        Assert.Contains("job.yaml:3", e.Message);
        Assert.Contains("unknown key \"batch_sise\"", e.Message);
    }

    [Fact]
    public void UnknownNestedKey_IsRejectedWithItsPathAndLine()
    {
        var e = Reject("optimizer:\n  kind: muon\n  learning_rate: 0.1\n");
        Assert.Contains("job.yaml:4", e.Message);
        Assert.Contains("optimizer.learning_rate", e.Message);
    }

    [Fact]
    public void WrongType_IsRejectedWithKeyAndLine()
    {
        var e = Reject("seed: 1\nsteps: many\n");
        Assert.Contains("job.yaml:3", e.Message);
        Assert.Contains("\"steps\" must be an integer", e.Message);
        e = Reject("optimizer: fast\n");
        Assert.Contains("\"optimizer\" must be a mapping", e.Message);
    }

    [Theory]
    [InlineData("batch_size: 0\n", "\"batch_size\" must be in [1, 4096]")]
    [InlineData("grad_accum_steps: 0\n", "\"grad_accum_steps\" must be in [1, 4096]")]
    [InlineData("grad_accum_steps: 2.5\n", "\"grad_accum_steps\" must be an integer")]
    [InlineData("optimizer:\n  lr: -0.1\n", "\"optimizer.lr\" must be > 0")]
    [InlineData("optimizer:\n  kind: sgd\n", "\"optimizer.kind\" must be one of muonclip, muon, adamw")]
    [InlineData("seq_len: 100000\n", "exceeds the model's max_position_embeddings")]
    [InlineData("data:\n  synthetic: [poetry]\n", "entries must be among")]
    [InlineData("schedule:\n  decay_fraction: 1.5\n", "\"schedule.decay_fraction\" must be >= 0 and <= 1")]
    [InlineData("balance:\n  seq_aux_alpha: -0.0001\n", "\"balance.seq_aux_alpha\" must be >= 0")]
    [InlineData("model_overrides:\n  hidden_sise: 64\n", "\"model_overrides.hidden_sise\" is not a key")]
    public void ImpossibleValue_IsRejected(string body, string expected)
    {
        var e = Reject(body);
        Assert.Contains(expected, e.Message);
        Assert.Contains("job.yaml:", e.Message);
    }

    [Fact]
    public void ByteLevelTokenizer_NeedsAVocabOf267()
    {
        using var dir = new TestUtil.TempDir();
        File.WriteAllText(Path.Combine(dir.Path, "model.json"), TestUtil.TestConfig().ToJson());
        string path = Path.Combine(dir.Path, "job.yaml");
        File.WriteAllText(path, "model: model.json\nseq_len: 32\n");
        var e = Assert.Throws<ConfigException>(() => JobConfig.Load(path, PretrainLoopTests.Corpus.Kinds));
        Assert.True(e.Message.Contains("vocab_size >= 267"), e.Message);
    }

    [Fact]
    public void Schedules_WarmUpThenFollowTheirShape()
    {
        var wsd = new LrSchedule { Kind = "wsd", WarmupSteps = 10, DecayFraction = 0.2f, MinLrRatio = 0.1f };
        Assert.Equal(0.1, wsd.Factor(0, 100), 6);
        Assert.Equal(1.0, wsd.Factor(9, 100), 6);
        Assert.Equal(1.0, wsd.Factor(79, 100), 6);
        Assert.True(wsd.Factor(90, 100) is < 1 and > 0.1);
        Assert.Equal(0.1, wsd.Factor(99, 100), 6);
        var cos = new LrSchedule { Kind = "cosine", WarmupSteps = 10, MinLrRatio = 0f };
        Assert.Equal(1.0, cos.Factor(10, 100), 6);
        Assert.Equal(0.5, cos.Factor(10 + 89 / 2.0 is var mid ? (long)mid : 0, 100), 1);
        Assert.Equal(0.0, cos.Factor(99, 100), 6);
    }
}
