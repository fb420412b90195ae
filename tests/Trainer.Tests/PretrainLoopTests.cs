using K2RL.Gym;
using K2RL.Model;
using K2RL.Model.Tokenization;
using K2RL.Trainer.Checkpointing;
using K2RL.Trainer.Pretraining;
using Serilog;
using Serilog.Core;
using Serilog.Events;

namespace K2RL.Trainer.Tests;

public class PretrainLoopTests
{
    internal static readonly SyntheticCorpus Corpus = new(new Dictionary<string, DocumentGenerator>
    {
        ["sum"] = (seed, d) => { var r = new Random((int)(seed % int.MaxValue)); int a = r.Next(100 * d), b = r.Next(100); return $"{a}+{b}={a + b}"; },
        ["rev"] = (seed, d) => { var r = new Random((int)(seed % int.MaxValue)); var s = new string(Enumerable.Range(0, 3 + d).Select(_ => (char)('a' + r.Next(26))).ToArray()); return $"rev {s} -> {new string(s.Reverse().ToArray())}"; },
    });

    internal static JobConfig Job(TestUtil.TempDir dir, string extra = "", int steps = 12, int every = 4, int keep = 3)
    {
        var cfg = TestUtil.TestConfig() with { VocabSize = 272 };
        string modelPath = Path.Combine(dir.Path, "model.json");
        File.WriteAllText(modelPath, cfg.ToJson());
        string yaml = $"""
            model: {modelPath}
            seed: 7
            batch_size: 2
            seq_len: 16
            steps: {steps}
            optimizer:
              kind: muonclip
              lr: 0.02
              qk_clip_tau: 3
            schedule:
              kind: wsd
              warmup_steps: 2
            data:
              synthetic: [sum, rev]
            checkpoint:
              every_steps: {every}
              keep: {keep}
            {extra}
            """;
        string path = Path.Combine(dir.Path, "job.yaml");
        File.WriteAllText(path, yaml);
        return JobConfig.Load(path, Corpus.Kinds);
    }

    private static PretrainResult Train(JobConfig job, string runDir, bool resume = false, long? maxSteps = null,
        BigramModel? model = null, IStepObserver? observer = null, ILogger? log = null)
    {
        model ??= new BigramModel(job.Model);
        var t = new Pretrainer(job, runDir, model, Corpus, new BpeTextEncoder(BpeTokenizer.ByteLevel()), log);
        return t.Train(resume, maxSteps, CancellationToken.None, observer);
    }

    private static float[] Losses(string runDir) =>
        StepMetrics.ReadAll(Path.Combine(runDir, "metrics.jsonl")).Select(m => m.Loss).ToArray();

    [Fact]
    public void ResumedRun_ReproducesTheUninterruptedLossesExactly()
    {
        using var dir = new TestUtil.TempDir();
        var job = Job(dir);
        string a = Path.Combine(dir.Path, "a"), b = Path.Combine(dir.Path, "b");
        var full = Train(job, a);
        Assert.Equal(StopReason.Completed, full.Reason);
        var first = Train(job, b, maxSteps: 6);
        Assert.Equal(StopReason.MaxSteps, first.Reason);
        Assert.Equal(6, first.Step);
        Train(job, b, resume: true);
        var la = Losses(a);
        Assert.Equal(12, la.Length);
        Assert.Equal(la, Losses(b));
        Assert.True(la[^1] < la[0], $"loss should fall: {la[0]} → {la[^1]}");
        Assert.Equal(
            File.ReadAllBytes(Path.Combine(a, "checkpoints/step-12/model.safetensors")),
            File.ReadAllBytes(Path.Combine(b, "checkpoints/step-12/model.safetensors")));
    }

    [Fact]
    public void CrashBetweenCheckpoints_ResumesFromTheLastOneAndMatches()
    {
        using var dir = new TestUtil.TempDir();
        var job = Job(dir);
        string a = Path.Combine(dir.Path, "a"), b = Path.Combine(dir.Path, "b");
        Train(job, a);
        Assert.Throws<CrashForTest>(() => Train(job, b, observer: new CrashAt(7)));
        Assert.Equal(7, Losses(b).Length);
        Assert.Equal("checkpoints/step-4", File.ReadAllText(Path.Combine(b, "LATEST")).Trim());
        File.AppendAllText(Path.Combine(b, "metrics.jsonl"), "{\"step\": 8, \"lo"); // a line cut short by the crash
        Train(job, b, resume: true);
        Assert.Equal(Losses(a), Losses(b));
    }

    [Fact]
    public void GradientAccumulation_ResumesExactlyAfterACrash_AndCountsKBTTokensPerStep()
    {
        using var dir = new TestUtil.TempDir();
        var job = Job(dir, "grad_accum_steps: 3", steps: 8, every: 3);
        Assert.Equal(3, job.GradAccumSteps);
        string a = Path.Combine(dir.Path, "a"), b = Path.Combine(dir.Path, "b");
        Train(job, a);
        Assert.Throws<CrashForTest>(() => Train(job, b, observer: new CrashAt(5)));
        Assert.Equal("checkpoints/step-3", File.ReadAllText(Path.Combine(b, "LATEST")).Trim());
        Train(job, b, resume: true);
        var ma = StepMetrics.ReadAll(Path.Combine(a, "metrics.jsonl"));
        Assert.Equal(8, ma.Count);                                      // one line per optimizer step
        Assert.Equal(Losses(a), Losses(b));
        Assert.All(ma, m => Assert.Equal(3L * 2 * 16, m.TokensPerStep));
        Assert.Equal(8L * 3 * 2 * 16, ma[^1].Tokens);
        Assert.All(ma, m => Assert.True(m.NewtonSchulzMs > 0 && m.NewtonSchulzMs <= m.OptimizerMs, $"ns {m.NewtonSchulzMs} of {m.OptimizerMs}"));
        Assert.Equal(
            File.ReadAllBytes(Path.Combine(a, "checkpoints/step-8/model.safetensors")),
            File.ReadAllBytes(Path.Combine(b, "checkpoints/step-8/model.safetensors")));

        // The data cursor advanced by K micro-batches per step: the accumulated run saw other tokens than K = 1.
        string c = Path.Combine(dir.Path, "c");
        Train(Job(dir, steps: 8, every: 3), c);
        Assert.NotEqual(Losses(a)[1..], Losses(c)[1..]);
    }

    [Fact]
    public void CorruptCheckpoint_IsRefusedAndResumeFallsBackToTheNewestGoodOne()
    {
        using var dir = new TestUtil.TempDir();
        var job = Job(dir, steps: 12);
        string a = Path.Combine(dir.Path, "a"), b = Path.Combine(dir.Path, "b");
        Train(job, a);
        Train(job, b, maxSteps: 10);                           // checkpoints 4, 8, 10
        string weights = Path.Combine(b, "checkpoints/step-10/model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        bytes[^5] ^= 0x40;
        File.WriteAllBytes(weights, bytes);
        var sink = new ListSink();
        var log = new LoggerConfiguration().WriteTo.Sink(sink).CreateLogger();
        var r = Train(job, b, resume: true, log: log);
        Assert.Equal(StopReason.Completed, r.Reason);
        Assert.Contains(sink.Events, e => e.Level == LogEventLevel.Warning && e.RenderMessage().Contains("step-10") && e.RenderMessage().Contains("checksum"));
        Assert.Equal(Losses(a), Losses(b));
    }

    [Fact]
    public void NoGoodCheckpoint_RefusesToContinue()
    {
        using var dir = new TestUtil.TempDir();
        var job = Job(dir, steps: 4, every: 4, keep: 1);
        string b = Path.Combine(dir.Path, "b");
        Train(job, b);
        File.WriteAllText(Path.Combine(b, "checkpoints/step-4/state.json"), "{}");
        var e = Assert.Throws<K2RL.Common.CorruptFileException>(() => Train(job, b, resume: true));
        Assert.Contains("no checkpoint of this run can be continued", e.Message);
        Assert.Contains("step-4", e.Message);           // each refused checkpoint, with why
        Assert.Contains("state.json", e.Message);
    }

    [Fact]
    public void ResumingWithAnotherModel_SaysTheModelDiffers()
    {
        using var dir = new TestUtil.TempDir();
        var job = Job(dir, steps: 4, every: 4);
        string b = Path.Combine(dir.Path, "b");
        Train(job, b);
        File.WriteAllText(job.ModelPath, (TestUtil.TestConfig() with { VocabSize = 272, HiddenSize = 48 }).ToJson());
        var other = JobConfig.Load(Path.Combine(dir.Path, "job.yaml"), Corpus.Kinds);
        var e = Assert.ThrowsAny<K2RL.Common.K2Exception>(() => Train(other, b, resume: true));
        Assert.True(e.Message.Contains("hidden_size"), e.Message);
        Assert.DoesNotContain("checksum", e.Message);
    }

    [Fact]
    public void ExistingRun_WithoutResume_IsRefused()
    {
        using var dir = new TestUtil.TempDir();
        var job = Job(dir, steps: 2, every: 2);
        string b = Path.Combine(dir.Path, "b");
        Train(job, b);
        Assert.Throws<K2RL.Common.ConfigException>(() => Train(job, b));
    }

    [Fact]
    public void NonFiniteLoss_SkipsTheStep_AndSeveralInARowStopWithTheLastGoodCheckpoint()
    {
        using var dir = new TestUtil.TempDir();
        var job = Job(dir, "max_bad_steps: 3", steps: 20);
        string b = Path.Combine(dir.Path, "b");
        var model = new BigramModel(job.Model);
        model.PoisonCalls.Add(1);                                 // step 2: skipped, training goes on
        model.PoisonCalls.UnionWith([9, 10, 11]);                 // steps 10–12: three in a row, stop
        var sink = new ListSink();
        var r = Train(job, b, model: model, log: new LoggerConfiguration().WriteTo.Sink(sink).CreateLogger());
        Assert.Equal(StopReason.TooManyBadSteps, r.Reason);
        Assert.Equal(12, r.Step);
        var m = StepMetrics.ReadAll(Path.Combine(b, "metrics.jsonl"));
        Assert.Equal([2, 10, 11, 12], m.Where(x => x.Skipped).Select(x => x.Step));
        Assert.Contains(sink.Events, e => e.Level == LogEventLevel.Warning && e.RenderMessage().Contains("step 2"));
        Assert.Equal("checkpoints/step-8", File.ReadAllText(Path.Combine(b, "LATEST")).Trim());
        Assert.Null(K2RL.Model.IO.CheckpointPath.Problem(Path.Combine(b, "checkpoints/step-8")));
    }

    [Fact]
    public void Metrics_HoldTheRequiredFieldsAndTheBiasRuleRuns()
    {
        using var dir = new TestUtil.TempDir();
        var job = Job(dir, steps: 3, every: 3);
        string b = Path.Combine(dir.Path, "b");
        var model = new BigramModel(job.Model);
        Train(job, b, model: model);
        string line = File.ReadLines(Path.Combine(b, "metrics.jsonl")).First();
        foreach (string key in new[] { "step", "loss", "lr", "grad_norm", "max_logit", "clipped_heads", "expert_load_max_over_mean", "tokens_per_s" })
        {
            Assert.Contains($"\"{key}\":", line);
        }

        var bias = model.Layout["model.layers.1.mlp.gate.e_score_correction_bias"].Of(model.Parameters).ToArray();
        Assert.Contains(bias, x => x != 0);
        Assert.All(bias, x => Assert.True(MathF.Abs(x) <= 3 * job.BiasGamma + 1e-7f));
        foreach (string f in new[] { "model.safetensors", "config.json", "optimizer.bin", "state.json", "MANIFEST" })
        {
            Assert.True(File.Exists(Path.Combine(b, "checkpoints/step-3", f)), f);
        }

        Assert.True(File.Exists(Path.Combine(b, "config.yaml")));
        Assert.Equal(job.Model, ModelConfig.Load(Path.Combine(b, "checkpoints/step-3/config.json")) with { });
    }

    private sealed class CrashForTest : Exception;

    private sealed class CrashAt(long step) : IStepObserver
    {
        public void OnStart(long firstStep, long totalSteps)
        {
        }

        public void OnStep(StepMetrics metrics, long totalSteps)
        {
            if (metrics.Step == step)
            {
                throw new CrashForTest();
            }
        }
    }

    internal sealed class ListSink : ILogEventSink
    {
        public List<LogEvent> Events { get; } = [];

        public void Emit(LogEvent logEvent)
        {
            lock (Events)
            {
                Events.Add(logEvent);
            }
        }
    }
}
