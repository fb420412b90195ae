using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using K2RL.Common;
using K2RL.Gym;
using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Trainer.Checkpointing;
using K2RL.Trainer.Optim;
using K2RL.Trainer.Training;
using Serilog;

namespace K2RL.Trainer.Pretraining;

/// <summary>Why a pretraining run stopped.</summary>
public enum StopReason
{
    Completed,
    MaxSteps,
    Interrupted,
    TooManyBadSteps,
}

public sealed record PretrainResult(StopReason Reason, long Step, string? Checkpoint, float LastLoss);

/// <summary>Receives each step's metrics (the CLI draws its progress bar from them).</summary>
public interface IStepObserver
{
    void OnStart(long firstStep, long totalSteps);

    void OnStep(StepMetrics metrics, long totalSteps);
}

/// <summary>
/// The pretraining job: packs each step's K micro-batches and runs them through <see cref="TrainStep"/> (forward,
/// backward, gradient clip, MuonClip / Muon / AdamW, QK-Clip, the correction-bias rule), appends metrics.jsonl, and checkpoints by the run-directory
/// contract. With the same seed a resumed run reproduces the uninterrupted one step for step.
/// </summary>
public sealed class Pretrainer
{
    public const string WeightsFile = TrainingFiles.WeightsFile;
    public const string ConfigFile = TrainingFiles.ConfigFile;
    public const string OptimizerFile = TrainingFiles.OptimizerFile;
    public const string StateFile = "state.json";

    private readonly JobConfig job;
    private readonly RunDirectory run;
    private readonly ITrainableModel model;
    private readonly TrainStep trainStep;
    private readonly BatchPacker packer;
    private readonly ITextEncoder encoder;
    private readonly ILogger log;
    private readonly string jobSha;
    private long step;
    private long tokens;
    private int badInARow;

    public Pretrainer(JobConfig job, string runDir, ITrainableModel model, SyntheticCorpus corpus, ITextEncoder encoder, ILogger? log = null)
    {
        this.job = job;
        this.model = model;
        this.log = log ?? Serilog.Core.Logger.None;
        run = new RunDirectory(runDir, this.log);
        trainStep = new TrainStep(model, job.Optimizer, job.BiasGamma, job.Threads);
        this.encoder = encoder;
        packer = new BatchPacker(new DocumentStream(job.Seed, job.Data, corpus), encoder, job.Model.VocabSize);
        model.SequenceBalanceAlpha = job.SeqAuxAlpha;
        jobSha = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(job.SourceText)));
    }

    public RunDirectory Run => run;

    public long Step => step;

    /// <summary>
    /// Runs until the job's step count, <paramref name="maxSteps"/> (an absolute step count), a stop request, or
    /// too many non-finite losses in a row. Every stop except the last writes a checkpoint.
    /// </summary>
    public PretrainResult Train(bool resume, long? maxSteps, CancellationToken stop, IStepObserver? observer = null)
    {
        Prepare(resume);
        long total = job.Steps;
        long end = Math.Min(total, maxSteps ?? total);
        int B = job.BatchSize, T = job.SeqLen, K = job.GradAccumSteps;
        var batches = Enumerable.Range(0, K).Select(_ => new MicroBatch(new int[B * T], new int[B * T], B, T)).ToArray();
        observer?.OnStart(step, total);
        float lastLoss = float.NaN;

        while (step < end)
        {
            if (stop.IsCancellationRequested)
            {
                return Stop(StopReason.Interrupted, lastLoss);
            }

            var sw = Stopwatch.StartNew();
            foreach (var b in batches)
            {
                packer.Next(b.Inputs, b.Targets, B, T);
            }

            double lr = job.Optimizer.Lr * job.Schedule.Factor(step, total);
            var r = trainStep.Run(batches, (float)lr);
            float loss = (float)r.Loss;
            long stepTokens = (long)K * B * T;
            tokens += stepTokens;
            if (r.Skipped)
            {
                badInARow++;
                log.Warning("step {Step}: non-finite loss {Loss} / grad norm {Norm}; step skipped ({Bad} in a row)", step + 1, loss, r.GradNorm, badInARow);
            }
            else
            {
                badInARow = 0;
                lastLoss = loss;
            }

            step++;
            double ms = sw.Elapsed.TotalMilliseconds;
            var m = StepMetrics.Of(step, loss, lr, r, ms, stepTokens, tokens);
            // Deliberate twin of RlJob.TrainAsync's iteration tail (metrics line, bad-step stop, periodic checkpoint): each loop returns its own result.
            File.AppendAllText(run.Metrics, m.ToJson() + "\n");
            observer?.OnStep(m, total);

            if (badInARow >= job.MaxBadSteps)
            {
                log.Error("{Bad} non-finite losses in a row: stopping; the last good checkpoint is kept", badInARow);
                return new PretrainResult(StopReason.TooManyBadSteps, step, run.LatestCheckpoint(), lastLoss);
            }

            if (step % job.CheckpointEvery == 0 && step < end)
            {
                SaveCheckpoint();
            }
        }

        return Stop(step >= total ? StopReason.Completed : StopReason.MaxSteps, lastLoss);
    }

    private PretrainResult Stop(StopReason reason, float lastLoss)
    {
        string dir = SaveCheckpoint();
        log.Information("{Reason} at step {Step}: checkpoint {Dir}", reason, step, dir);
        return new PretrainResult(reason, step, dir, lastLoss);
    }

    private void Prepare(bool resume)
    {
        if (run.Open(resume, Load) is { } dir)
        {
            log.Information("resumed from {Dir} at step {Step}", dir, step);
            TruncateMetrics(step);
        }
        else
        {
            model.InitializeWeights(job.Seed);
            step = 0;
            tokens = 0;
            TruncateMetrics(0);
        }

        AtomicFile.WriteAllText(Path.Combine(run.Root, "config.yaml"), ResolvedConfigText());
    }

    // Reads like RlJob.Load (its state file, the job-hash warning, TrainingFiles.Load); the cursors restored differ.
    private void Load(string dir)
    {
        var state = TrainState.FromJson(File.ReadAllText(Path.Combine(dir, StateFile)), Path.Combine(dir, StateFile));
        if (state.Seed != job.Seed)
        {
            log.Warning("the checkpoint was made with seed {Old}, the job says {New}: the data stream continues with the job's seed", state.Seed, job.Seed);
        }

        if (state.JobSha256 != jobSha)
        {
            log.Warning("the job file differs from the one that wrote this checkpoint; continuing with the new one");
        }

        TrainingFiles.Load(dir, model.Layout, model.Parameters, trainStep.Optimizer);

        packer.Restore(state.Data);
        step = state.Step;
        tokens = state.Tokens;
        badInARow = state.BadStepsInARow;
    }

    /// <summary>Writes checkpoints/step-N by the run-directory contract and returns its folder.</summary>
    public string SaveCheckpoint() => run.Save(step, dir =>
    {
        TrainingFiles.Save(dir, job.Model, model.Layout, model.Parameters, trainStep.Optimizer);
        if (encoder is BpeTextEncoder bpe)
        {
            // The tokenizer travels with the weights, so a checkpoint is usable on its own (RunDirectory.Save fsyncs
            // its files along with the rest before the folder is renamed into place).
            bpe.Tokenizer.Save(dir);
        }

        var state = new TrainState
        {
            Step = step,
            Seed = job.Seed,
            Tokens = tokens,
            BadStepsInARow = badInARow,
            Data = packer.Cursor,
            LrFactor = job.Schedule.Factor(step, job.Steps),
            Optimizer = job.Optimizer.Kind,
            JobSha256 = jobSha,
        };
        AtomicFile.WriteAllText(Path.Combine(dir, StateFile), state.ToJson());
    }, job.KeepCheckpoints);

    /// <summary>Keeps metrics.jsonl lines of steps ≤ <paramref name="lastStep"/> (a resumed run rewrites the rest).</summary>
    private void TruncateMetrics(long lastStep) => run.TruncateMetrics(lastStep, line => StepMetrics.Parse(line).Step);

    private string ResolvedConfigText()
    {
        var sb = new StringBuilder();
        sb.Append("# resolved job config, written by k2rl pretrain\n");
        sb.Append($"# git_revision: {GitRevision()}\n");
        sb.Append($"# job_sha256: {jobSha}\n");
        sb.Append($"# model: {job.ModelPath}\n");
        var o = job.Optimizer;
        sb.Append($"# resolved: seed={job.Seed} batch_size={job.BatchSize} seq_len={job.SeqLen} steps={job.Steps} grad_accum_steps={job.GradAccumSteps} optimizer={o.Kind} lr={o.Lr} wd={o.WeightDecay} momentum={o.Momentum} nesterov={o.Nesterov} tau={o.QkClipTau} grad_clip={o.GradClip} schedule={job.Schedule.Kind}/{job.Schedule.WarmupSteps}/{job.Schedule.DecayFraction}/{job.Schedule.MinLrRatio} bias_gamma={job.BiasGamma} data={string.Join('+', job.Data.SyntheticTasks)}|{job.Data.Files.Count} files\n");
        sb.Append(job.SourceText);
        return sb.ToString();
    }

    private static string GitRevision()
    {
        try
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !Directory.Exists(Path.Combine(dir.FullName, ".git")) && !File.Exists(Path.Combine(dir.FullName, ".git")))
            {
                dir = dir.Parent;
            }

            if (dir is null)
            {
                return "unknown";
            }

            var psi = new ProcessStartInfo("git", "rev-parse HEAD") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir.FullName };
            using var p = Process.Start(psi);
            string rev = p?.StandardOutput.ReadToEnd().Trim() ?? "";
            p?.WaitForExit(5000);
            return rev.Length == 40 ? rev : "unknown";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "unknown";
        }
    }
}
