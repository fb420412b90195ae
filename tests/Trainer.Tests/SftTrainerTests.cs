using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Gym;
using K2RL.Gym.Synthesis;
using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Model.Tokenization;
using K2RL.Trainer.Pretraining;
using K2RL.Trainer.Sft;

namespace K2RL.Trainer.Tests;

/// <summary>The SFT job on a tiny random base: the loss falls, resume is exact, checkpoints resolve like a pretrain run's.</summary>
public class SftTrainerTests
{
    private static readonly GymRegistry Registry = GymRegistry.CreateDefault();
    private static readonly string[] EvalEnvs = Registry.Environments.Where(e => e.HasVerifier).Select(e => e.Name).ToArray();

    /// <summary>Timing fields, which differ between any two runs.</summary>
    private static readonly string[] TimingFields = ["tokens_per_s", "step_ms", "fwd_bwd_ms", "optimizer_ms", "ns_ms", "eval_s"];

    internal sealed class Setup : IDisposable
    {
        private readonly TestUtil.TempDir dir = new();

        public Setup(int steps = 8, string extra = "", int records = 12)
        {
            var config = TestUtil.TestConfig() with { VocabSize = 272, MaxPositionEmbeddings = 512 };
            BaseDir = System.IO.Path.Combine(dir.Path, "base");
            var model = new K2Model(config);
            model.InitializeWeights(5);
            ModelCheckpoint.Save(BaseDir, config, model.Parameters, BpeTokenizer.ByteLevel());
            DataPath = SftFixture.Write(System.IO.Path.Combine(dir.Path, "train.jsonl"),
                SftFixture.Records(Registry, ["list_ops", "arithmetic"], [1], records / 2));
            JobPath = System.IO.Path.Combine(dir.Path, "sft.yaml");
            File.WriteAllText(JobPath, $"""
                init_from: {BaseDir}
                seed: 4
                data:
                  path: {DataPath}
                  held_out_records: 2
                seq_len: 192
                batch_size: 2
                grad_accum_steps: 2
                steps: {steps}
                optimizer:
                  kind: muonclip
                  lr: 0.02
                  qk_clip_tau: 5
                schedule:
                  kind: cosine
                  warmup_steps: 2
                eval:
                  every: 3
                  envs: [list_ops]
                  tasks: 2
                  difficulties: [1]
                  max_tokens: 6
                checkpoint:
                  every_steps: 3
                  keep: 2
                {extra}
                """);
        }

        public string Path => dir.Path;

        public string BaseDir { get; }

        public string DataPath { get; }

        public string JobPath { get; }

        public SftJobConfig Job => SftJobConfig.Load(JobPath, EvalEnvs);

        public string RunDir(string name) => System.IO.Path.Combine(dir.Path, name);

        public SftResult Train(string name, bool resume = false, long? maxSteps = null, CancellationToken stop = default, IStepObserver? observer = null) =>
            new SftTrainer(Job, RunDir(name), SftDataset.Read(DataPath), Registry).Train(resume, maxSteps, stop, observer);

        public void Dispose() => dir.Dispose();
    }

    internal static string[] Deterministic(string runDir) =>
        File.ReadLines(System.IO.Path.Combine(runDir, "metrics.jsonl")).Where(l => l.Trim().Length > 0).Select(l =>
        {
            var o = JsonNode.Parse(l)!.AsObject();
            foreach (string f in TimingFields)
            {
                o.Remove(f);
            }

            return o.ToJsonString();
        }).ToArray();

    [Fact]
    public void Sft_LowersTheLoss_EvaluatesOnSchedule_AndResumesExactlyAfterAnInterruption()
    {
        using var s = new Setup();
        var full = s.Train("a");
        Assert.Equal(StopReason.Completed, full.Reason);
        var lines = Deterministic(s.RunDir("a"));
        Assert.Equal(8, lines.Length);
        var rows = lines.Select(l => JsonNode.Parse(l)!).ToList();
        Assert.True(rows[^1]["loss"]!.GetValue<double>() < rows[0]["loss"]!.GetValue<double>(), $"loss {rows[0]["loss"]} → {rows[^1]["loss"]}");
        Assert.Equal([3, 6, 8], rows.Where(r => r["held_out_loss"] is not null).Select(r => r["step"]!.GetValue<int>()));
        Assert.All(rows.Where(r => r["held_out_loss"] is not null), r => Assert.NotNull(r["held_out"]?["list_ops/d1"]));
        Assert.All(rows, r => Assert.True(r["trained_tokens"]!.GetValue<long>() > 0));
        Assert.NotNull(full.HeldOut);

        // Stopped in-process (SIGINT's path: the token is cancelled) after step 4, between checkpoints, then resumed.
        using var cancel = new CancellationTokenSource();
        var stopped = s.Train("b", stop: cancel.Token, observer: new CancelAt(4, cancel));
        Assert.Equal(StopReason.Interrupted, stopped.Reason);
        Assert.Equal(4, stopped.Step);
        var resumed = s.Train("b", resume: true);
        Assert.Equal(StopReason.Completed, resumed.Reason);
        Assert.Equal(lines, Deterministic(s.RunDir("b")));
        Assert.Equal(
            File.ReadAllBytes(System.IO.Path.Combine(s.RunDir("a"), "checkpoints/step-8/model.safetensors")),
            File.ReadAllBytes(System.IO.Path.Combine(s.RunDir("b"), "checkpoints/step-8/model.safetensors")));

        // A crash after step 5 (no checkpoint written for it): the resume starts from step 3's and still matches.
        Assert.Throws<InvalidOperationException>(() => s.Train("c", observer: new ThrowAt(5)));
        Assert.Equal("checkpoints/step-3", File.ReadAllText(System.IO.Path.Combine(s.RunDir("c"), "LATEST")).Trim());
        s.Train("c", resume: true);
        Assert.Equal(lines, Deterministic(s.RunDir("c")));
    }

    [Fact]
    public void SftRun_ResolvesLikeAPretrainRun_WithWeightsConfigAndTokenizer()
    {
        using var s = new Setup(steps: 2, extra: "");
        s.Train("a");
        var checkpoint = ModelCheckpoint.Load(s.RunDir("a"));
        Assert.EndsWith(System.IO.Path.Combine("checkpoints", "step-2"), checkpoint.Directory);
        Assert.NotNull(checkpoint.Tokenizer);
        Assert.Null(CheckpointPath.Problem(checkpoint.Directory));
        Assert.True(File.Exists(System.IO.Path.Combine(checkpoint.Directory, SftTrainer.StateFile)));
        Assert.NotEqual(ModelCheckpoint.Load(s.BaseDir).Parameters, checkpoint.Parameters);

        // And an SFT run is a base for another SFT job (init_from a run directory).
        string job2 = System.IO.Path.Combine(s.Path, "again.yaml");
        File.WriteAllText(job2, File.ReadAllText(s.JobPath).Replace($"init_from: {s.BaseDir}", $"init_from: {s.RunDir("a")}"));
        Assert.Equal(checkpoint.Directory, SftJobConfig.Load(job2, EvalEnvs).InitFrom);
    }

    [Theory]
    [InlineData("bogus: 1", "unknown key \"bogus\"")]
    [InlineData("batch_size: many", "batch_size")]
    [InlineData("seq_len: 4096", "max_position_embeddings")]
    [InlineData("eval:\n  envs: [nope]", "nope")]
    public void JobFileErrors_NameTheFileAndLine(string extra, string expected)
    {
        using var s = new Setup();
        string text = File.ReadAllText(s.JobPath);
        // a key given twice would be a YAML error; replace the section or key the case overrides
        text = extra.StartsWith("eval:", StringComparison.Ordinal) ? text[..text.IndexOf("eval:", StringComparison.Ordinal)] + extra + "\n"
            : extra.StartsWith("seq_len", StringComparison.Ordinal) || extra.StartsWith("batch_size", StringComparison.Ordinal)
                ? string.Join('\n', text.Split('\n').Where(l => !l.StartsWith(extra.Split(':')[0] + ":", StringComparison.Ordinal))) + "\n" + extra + "\n"
                : text + "\n" + extra + "\n";
        File.WriteAllText(s.JobPath, text);
        var e = Assert.Throws<ConfigException>(() => s.Job);
        Assert.Contains(s.JobPath + ":", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void MissingBaseOrDataset_OrAMismatchedModel_AreJobFileErrors()
    {
        using var s = new Setup();
        string text = File.ReadAllText(s.JobPath);
        File.WriteAllText(s.JobPath, text.Replace(s.BaseDir, s.BaseDir + "-missing"));
        var e = Assert.Throws<ConfigException>(() => s.Job);
        Assert.Contains(s.JobPath + ":1:", e.Message);
        Assert.Contains("init_from", e.Message);

        File.WriteAllText(s.JobPath, text.Replace(s.DataPath, s.DataPath + ".missing"));
        e = Assert.Throws<ConfigException>(() => s.Job);
        Assert.Contains("data.path", e.Message);
        Assert.Contains(s.JobPath + ":", e.Message);

        string other = System.IO.Path.Combine(s.Path, "other.json");
        File.WriteAllText(other, (TestUtil.TestConfig() with { VocabSize = 272, MaxPositionEmbeddings = 512, HiddenSize = 48 }).ToJson());
        File.WriteAllText(s.JobPath, text + $"\nmodel: {other}\n");
        e = Assert.Throws<ConfigException>(() => s.Job);
        Assert.Contains("hidden_size", e.Message);
        Assert.Contains(s.JobPath + ":", e.Message);
    }

    private sealed class CancelAt(long step, CancellationTokenSource cancel) : IStepObserver
    {
        public void OnStart(long firstStep, long totalSteps)
        {
        }

        public void OnStep(StepMetrics metrics, long totalSteps)
        {
            if (metrics.Step == step)
            {
                cancel.Cancel();
            }
        }
    }

    private sealed class ThrowAt(long step) : IStepObserver
    {
        public void OnStart(long firstStep, long totalSteps)
        {
        }

        public void OnStep(StepMetrics metrics, long totalSteps)
        {
            if (metrics.Step == step)
            {
                throw new InvalidOperationException("crash for the test");
            }
        }
    }
}
