using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Gym;
using K2RL.Gym.Synthesis;
using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Model.Tokenization;
using K2RL.Rollout;
using K2RL.Trainer.Checkpointing;
using K2RL.Trainer.Pretraining;
using K2RL.Trainer.Training;
using Serilog;

namespace K2RL.Trainer.Sft;

/// <summary>How an SFT run ended; <see cref="HeldOut"/> is the last greedy held-out accuracy per "ENV/dD" (null when none was measured).</summary>
public sealed record SftResult(StopReason Reason, long Step, string? Checkpoint, float LastLoss, IReadOnlyDictionary<string, double>? HeldOut)
{
    /// <summary>What preparing the dataset did (records, split, truncated and dropped counts).</summary>
    public SftDataStats? Data { get; init; }
}

/// <summary>
/// The SFT job: from a base checkpoint, each step takes grad_accum_steps × batch_size records from the seeded epoch
/// stream (<see cref="SftData"/>), one row per record, and runs them through <see cref="TrainStep"/> with the loss on
/// the assistant tokens only (a per-token mean over all the step's micro-batches; MuonClip / Muon / AdamW, QK-Clip, the
/// bias rule). Every eval.every steps and at the end: the held-out SFT loss and greedy held-out accuracy
/// (<see cref="HeldOutEval.GreedyAccuracyAsync"/>, as <c>k2rl gym eval</c>). metrics.jsonl lines are the pretraining
/// ones (<see cref="StepMetrics"/>) plus epoch, trained tokens and the evaluation; checkpoints follow the run-directory
/// contract, and with the same job a resumed run reproduces the uninterrupted one step for step.
/// </summary>
public sealed class SftTrainer
{
    public const string StateFile = "sft_state.json";

    private readonly SftJobConfig job;
    private readonly RunDirectory run;
    private readonly ILogger log;
    private readonly K2ModelAdapter model;
    private readonly BpeTokenizer tokenizer;
    private readonly TrainStep trainStep;
    private readonly SftData data;
    private readonly GymRegistry registry;
    private readonly string jobSha;
    private readonly int totalSteps;
    private RolloutEngine? engine;
    private long step;
    private long tokens;
    private long trainedTokens;
    private int badInARow;

    /// <param name="records">the dataset, read (and every line checked) by <see cref="SftDataset.Read"/>.</param>
    public SftTrainer(SftJobConfig job, string runDir, IReadOnlyList<SftRecord> records, GymRegistry registry, ILogger? log = null)
    {
        this.job = job;
        this.registry = registry;
        this.log = log ?? Serilog.Core.Logger.None;
        run = new RunDirectory(runDir, this.log);
        var checkpoint = ModelCheckpoint.Load(job.InitFrom, warn: w => this.log.Warning("{Warning}", w));
        tokenizer = checkpoint.Tokenizer
            ?? throw new ConfigException($"{checkpoint.Directory} holds no tokenizer: SFT needs the tokenizer the base was trained with");
        model = new K2ModelAdapter(new K2Model(checkpoint.Config));
        checkpoint.Parameters.CopyTo(model.Parameters, 0);
        trainStep = new TrainStep(model, job.Optimizer, job.BiasGamma, job.Threads);
        data = new SftData(records, tokenizer, job.SeqLen, job.Overlong, job.HeldOutRecords, job.Seed);
        totalSteps = job.TotalSteps(data.Train.Count);
        jobSha = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(job.SourceText)));
        var s = data.Stats;
        this.log.Information("SFT data {Data:l}: {Records} records, {Train} train ({Tokens} tokens, {Trained} trained), {HeldOut} held out; over seq_len {SeqLen}: {Truncated} truncated ({Cut} tokens cut), {Dropped} dropped; {Empty} without a trained token dropped; {Steps} steps",
            job.Data, s.Records, s.Train, s.TrainTokens, s.TrainedTokens, s.HeldOut, job.SeqLen, s.Truncated, s.TruncatedTokens, s.Dropped, s.NoTrainedTokens, totalSteps);
    }

    public RunDirectory Run => run;

    public SftDataStats DataStats => data.Stats;

    public int TotalSteps => totalSteps;

    public BpeTokenizer Tokenizer => tokenizer;

    public K2ModelAdapter Model => model;

    /// <summary>
    /// Runs until the job's step count, <paramref name="maxSteps"/> (an absolute step count), a stop request, or too
    /// many non-finite losses in a row. Every stop except the last writes a checkpoint.
    /// </summary>
    public SftResult Train(bool resume, long? maxSteps, CancellationToken stop, IStepObserver? observer = null)
    {
        Prepare(resume);
        long end = Math.Min(totalSteps, maxSteps ?? totalSteps);
        int rows = job.BatchSize * job.GradAccumSteps;
        observer?.OnStart(step, totalSteps);
        float lastLoss = float.NaN;
        IReadOnlyDictionary<string, double>? heldOut = null;
        while (step < end)
        {
            if (stop.IsCancellationRequested)
            {
                return Stop(StopReason.Interrupted, lastLoss, heldOut);
            }

            var sw = Stopwatch.StartNew();
            var sequences = data.Next(rows);
            var batches = data.Batches(sequences, job.GradAccumSteps);
            double lr = job.Optimizer.Lr * job.Schedule.Factor(step, totalSteps);
            var r = trainStep.Run(batches, (float)lr);
            long stepTokens = sequences.Sum(x => (long)x.Tokens.Length - 1);
            tokens += stepTokens;
            trainedTokens += r.Tokens;
            if (r.Skipped)
            {
                badInARow++;
                log.Warning("step {Step}: non-finite loss {Loss} / grad norm {Norm}; step skipped ({Bad} in a row)", step + 1, r.Loss, r.GradNorm, badInARow);
            }
            else
            {
                badInARow = 0;
                lastLoss = (float)r.Loss;
            }

            step++;
            double ms = sw.Elapsed.TotalMilliseconds;
            var m = StepMetrics.Of(step, (float)r.Loss, lr, r, ms, stepTokens, tokens);
            var line = JsonNode.Parse(m.ToJson())!.AsObject();
            line["epoch"] = data.Cursor.Epoch + (double)data.Cursor.Position / data.Train.Count;
            line["trained_tokens"] = r.Tokens;
            line["padded_tokens"] = batches.Sum(b => (long)b.B * b.T);
            if (job.Eval.Every > 0 && (step % job.Eval.Every == 0 || step == totalSteps))
            {
                var ev = Evaluate();
                line["held_out_loss"] = ev.Loss is double hl ? Math.Round(hl, 6) : null;
                if (ev.Accuracy is { } acc)
                {
                    heldOut = acc;
                    line["held_out"] = new JsonObject(acc.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value))));
                }

                line["eval_s"] = Math.Round(ev.Seconds, 2);
            }

            // Deliberate twin of Pretrainer.Train's step tail (metrics line, bad-step stop, periodic checkpoint).
            File.AppendAllText(run.Metrics, line.ToJsonString() + "\n");
            observer?.OnStep(m, totalSteps);
            if (badInARow >= job.MaxBadSteps)
            {
                log.Error("{Bad} non-finite losses in a row: stopping; the last good checkpoint is kept", badInARow);
                return new SftResult(StopReason.TooManyBadSteps, step, run.LatestCheckpoint(), lastLoss, heldOut) { Data = data.Stats };
            }

            if (step % job.CheckpointEvery == 0 && step < end)
            {
                SaveCheckpoint();
            }
        }

        return Stop(step >= totalSteps ? StopReason.Completed : StopReason.MaxSteps, lastLoss, heldOut);
    }

    /// <summary>The held-out SFT loss (per-token mean over the held-out records' assistant tokens) and greedy held-out accuracy.</summary>
    public (double? Loss, IReadOnlyDictionary<string, double>? Accuracy, double Seconds) Evaluate()
    {
        var sw = Stopwatch.StartNew();
        double? loss = data.HeldOut.Count == 0 ? null : HeldOutLoss();
        IReadOnlyDictionary<string, double>? accuracy = null;
        if (job.Eval.Envs.Count > 0)
        {
            engine ??= new RolloutEngine(new ModelDecoder(model.Model.Config, Math.Clamp(job.Eval.Tasks, 1, 32)),
                new EngineOptions { SampleableVocab = Math.Min(tokenizer.VocabSize, model.Model.Config.VocabSize) });
            engine.Decoder.LoadWeights(model.Parameters);   // the engine is idle between evaluations
            accuracy = HeldOutEval.GreedyAccuracyAsync(engine, tokenizer, registry, job.Eval.Envs.Select(e => (e, job.Eval.MaxTokens)),
                job.Eval.Difficulties, job.Eval.Tasks, job.Seed, CancellationToken.None).GetAwaiter().GetResult();
        }

        log.Information("held-out at step {Step}: loss {Loss:F4} {Accuracy:l} ({Seconds:F1} s)", step, loss,
            accuracy is null ? "" : string.Join(" ", accuracy.Select(kv => $"{kv.Key}={100 * kv.Value:F1}%")), sw.Elapsed.TotalSeconds);
        return (loss, accuracy, sw.Elapsed.TotalSeconds);
    }

    /// <summary>Forward only, micro-batches of batch_size records: Σ CE over trained tokens / their count.</summary>
    private double HeldOutLoss()
    {
        double sum = 0;
        long n = 0;
        foreach (var chunk in data.HeldOut.Chunk(job.BatchSize))
        {
            var b = data.Rows(chunk);
            model.Forward(b.Inputs, b.Targets, b.B, b.T);
            var ce = model.TokenLosses;
            for (int i = 0; i < b.B * b.T; i++)
            {
                if (b.Targets[i] >= 0)
                {
                    sum += ce[i];
                    n++;
                }
            }
        }

        return n == 0 ? double.NaN : sum / n;
    }

    private SftResult Stop(StopReason reason, float lastLoss, IReadOnlyDictionary<string, double>? heldOut)
    {
        string dir = SaveCheckpoint();
        log.Information("{Reason} at step {Step}: checkpoint {Dir}", reason, step, dir);
        return new SftResult(reason, step, dir, lastLoss, heldOut) { Data = data.Stats };
    }

    private void Prepare(bool resume)
    {
        if (run.Open(resume, Load) is { } dir)
        {
            log.Information("resumed from {Dir} at step {Step}", dir, step);
        }
        else
        {
            step = 0;
            tokens = 0;
            trainedTokens = 0;
        }

        run.TruncateMetrics(step, line => StepMetrics.Parse(line).Step);
        AtomicFile.WriteAllText(Path.Combine(run.Root, "config.yaml"),
            $"# resolved SFT job config, written by k2rl sft\n# base: {job.InitFrom}\n# data: {job.Data}\n# job_sha256: {jobSha}\n# steps: {totalSteps}\n{job.SourceText}");
    }

    // Reads like Pretrainer.Load and RlJob.Load (its state file, the job-hash warning, TrainingFiles.Load); the cursors restored differ.
    private void Load(string dir)
    {
        string statePath = Path.Combine(dir, StateFile);
        var state = SftState.FromJson(File.ReadAllText(statePath), statePath);
        if (state.JobSha256 != jobSha)
        {
            log.Warning("the job file differs from the one that wrote this checkpoint; continuing with the new one");
        }

        if (state.TrainRecords != data.Train.Count)
        {
            log.Warning("the checkpoint was cut from {Old} training records, the dataset now has {New}: the data stream differs from the interrupted run's",
                state.TrainRecords, data.Train.Count);
        }

        TrainingFiles.Load(dir, model.Layout, model.Parameters, trainStep.Optimizer);
        data.Restore(state.Data);
        step = state.Step;
        tokens = state.Tokens;
        trainedTokens = state.TrainedTokens;
        badInARow = state.BadStepsInARow;
    }

    /// <summary>Writes checkpoints/step-N by the run-directory contract (weights, config, optimizer, tokenizer, sft_state.json); returns its folder.</summary>
    public string SaveCheckpoint() => run.Save(step, dir =>
    {
        TrainingFiles.Save(dir, model.Model.Config, model.Layout, model.Parameters, trainStep.Optimizer);
        tokenizer.Save(dir);
        var state = new SftState
        {
            Step = step,
            Seed = job.Seed,
            Data = data.Cursor,
            Tokens = tokens,
            TrainedTokens = trainedTokens,
            BadStepsInARow = badInARow,
            TrainRecords = data.Train.Count,
            LrFactor = job.Schedule.Factor(step, totalSteps),
            BaseCheckpoint = job.InitFrom,
            JobSha256 = jobSha,
        };
        AtomicFile.WriteAllText(Path.Combine(dir, StateFile), state.ToJson());
    }, job.KeepCheckpoints);
}
