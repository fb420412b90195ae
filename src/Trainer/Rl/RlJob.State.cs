using System.Text.Json;
using K2RL.Common;
using K2RL.Model.IO;
using K2RL.Rollout;
using K2RL.Rollout.Episodes;
using K2RL.Trainer.Checkpointing;
using K2RL.Trainer.Pretraining;

namespace K2RL.Trainer.Rl;

/// <summary>rl_state.json of an RL checkpoint: everything besides weights and optimizer moments that the next iteration depends on.</summary>
public sealed record RlState
{
    public int Format { get; init; } = 1;

    /// <summary>Iterations completed.</summary>
    public long Iteration { get; init; }

    /// <summary>The policy version of the weights in this checkpoint.</summary>
    public long WeightVersion { get; init; }

    public ulong Seed { get; init; }

    public int BadStepsInARow { get; init; }

    public required DataCursor Ptx { get; init; }

    /// <summary>Episodes paused by the generation budget (PausedEpisode JSON, with env snapshots).</summary>
    public IReadOnlyList<string> Paused { get; init; } = [];

    /// <summary>Finished responses whose group still has paused members (Trajectory JSON).</summary>
    public IReadOnlyList<string> Waiting { get; init; } = [];

    public double Temperature { get; init; }

    public string BaseCheckpoint { get; init; } = "";

    public string JobSha256 { get; init; } = "";

    public string ToJson() => StateJson.Serialize(this);

    public static RlState FromJson(string json, string path)
    {
        var s = StateJson.Deserialize<RlState>(json, path);
        return s.Format == 1 ? s : throw new CorruptFileException(path, $"rl_state.json format {s.Format} is not 1");
    }
}

public sealed partial class RlJob
{
    private void Prepare(bool resume)
    {
        if (run.Open(resume, Load) is { } dir)
        {
            log.Information("resumed from {Dir} at iteration {Iteration} (weights version {Version})", dir, iteration, version);
            TruncateMetrics(iteration);
        }
        else
        {
            iteration = 0;
            version = 0;
            TruncateMetrics(0);
        }

        if (version > channel.LatestVersion)
        {
            channel.Publish(version, model.Parameters);   // the resumed weights (version 0 is the base, already out)
            engine.SyncWeights();
        }

        AtomicFile.WriteAllText(Path.Combine(run.Root, "config.yaml"),
            $"# resolved RL job config, written by k2rl rl\n# base: {baseDir}\n# job_sha256: {jobSha}\n{job.SourceText}");
    }

    // Reads like Pretrainer.Load (its state file, the job-hash warning, TrainingFiles.Load); the cursors restored differ.
    private void Load(string dir)
    {
        string statePath = Path.Combine(dir, StateFile);
        var state = RlState.FromJson(File.ReadAllText(statePath), statePath);
        if (state.JobSha256 != jobSha)
        {
            log.Warning("the job file differs from the one that wrote this checkpoint; continuing with the new one");
        }

        TrainingFiles.Load(dir, model.Layout, model.Parameters, trainStep.Optimizer);

        ptx.Restore(state.Ptx);
        iteration = state.Iteration;
        version = state.WeightVersion;
        badInARow = state.BadStepsInARow;
        paused = state.Paused.Select((j, i) => PausedEpisode.FromJson(j, $"{statePath}, paused[{i}]")).ToList();
        waiting = state.Waiting.Select((j, i) => Trajectory.FromJson(j, $"{statePath}, waiting[{i}]")).ToList();
    }

    /// <summary>Writes checkpoints/step-N (N = iterations done) by the run-directory contract; returns its folder.</summary>
    public string SaveCheckpoint() => run.Save(iteration, dir =>
    {
        TrainingFiles.Save(dir, model.Model.Config, model.Layout, model.Parameters, trainStep.Optimizer);
        tokenizer.Save(dir);
        var state = new RlState
        {
            Iteration = iteration,
            WeightVersion = version,
            Seed = job.Seed,
            BadStepsInARow = badInARow,
            Ptx = ptx.Cursor,
            Paused = paused.Select(p => p.ToJson()).ToList(),
            Waiting = waiting.Select(t => t.ToJson()).ToList(),
            Temperature = job.Temperature.At(iteration),
            BaseCheckpoint = baseDir,
            JobSha256 = jobSha,
        };
        AtomicFile.WriteAllText(Path.Combine(dir, StateFile), state.ToJson());
    }, job.KeepCheckpoints);

    /// <summary>Keeps metrics.jsonl lines of iterations ≤ <paramref name="last"/> (a resumed run writes the rest again).</summary>
    private void TruncateMetrics(long last) => run.TruncateMetrics(last, RlMetrics.IterationOf);

    private RlMetrics Metrics(double temperature, IReadOnlyList<ScoredGroup> scored, EpisodeBatch batch, TrainOutcome train,
        CalibrationResult calibration, IReadOnlyDictionary<string, double>? heldOut)
    {
        var envs = new Dictionary<string, EnvIterationMetrics>(StringComparer.Ordinal);
        foreach (var byEnv in scored.GroupBy(g => g.Group.Env.Name))
        {
            var rows = byEnv.SelectMany(g => g.Members.Select((t, i) => (T: t, R: g.Rewards[i], g.Verifiable))).ToList();
            envs[byEnv.Key] = new EnvIterationMetrics
            {
                Responses = rows.Count,
                RewardMean = rows.Average(r => r.R),
                Accuracy = rows[0].Verifiable ? rows.Count(r => r.T.Correct == true) / (double)rows.Count : double.NaN,
                TruncationRate = rows.Count(r => r.T.Truncated) / (double)rows.Count,
                ResponseTokensMean = rows.Average(r => r.T.ResponseTokens),
                ResponseTokensMax = rows.Max(r => r.T.ResponseTokens),
                Failed = rows.Count(r => r.T.Failed),
            };
        }

        var all = scored.SelectMany(g => g.Members.Select((t, i) => (T: t, R: g.Rewards[i], g.Verifiable))).ToList();
        var verifiable = all.Where(r => r.Verifiable).ToList();
        return new RlMetrics
        {
            Iteration = iteration,
            Version = version,
            Temperature = temperature,
            Envs = envs,
            RewardMean = all.Count == 0 ? double.NaN : all.Average(r => r.R),
            Accuracy = verifiable.Count == 0 ? double.NaN : verifiable.Count(r => r.T.Correct == true) / (double)verifiable.Count,
            Groups = scored.Count,
            Responses = all.Count,
            LossRl = train.LossRl,
            LossPtx = train.LossPtx,
            LossCritic = train.LossCritic,
            LogprobMismatchMean = train.MismatchMean,
            LogprobMismatchMax = train.MismatchMax,
            RoutingFlips = train.RoutingFlips,
            UniformGroups = train.UniformGroups,
            KlToOld = train.KlToOld,
            GradNorm = train.GradNorm,
            Skipped = train.Skipped,
            MaxLogit = train.MaxLogit,
            ClippedHeads = train.ClippedHeads,
            ExpertLoadMaxOverMean = train.ExpertLoadMaxOverMean,
            CriticAccuracy = calibration.Accuracy,
            CriticPairs = calibration.Pairs,
            PartialPaused = batch.Paused.Count,
            PartialResumed = batch.Resumed,
            TokensGenerated = batch.TokensGenerated,
            HeldOut = heldOut,
        };
    }
}
