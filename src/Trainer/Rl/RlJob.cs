using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using K2RL.CheckpointEngine;
using K2RL.Common;
using K2RL.Gym;
using K2RL.Gym.Eval;
using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Model.Tokenization;
using K2RL.Rollout;
using K2RL.Rollout.Episodes;
using K2RL.Rollout.Workers;
using K2RL.Trainer.Checkpointing;
using K2RL.Trainer.Pretraining;
using K2RL.Trainer.Training;
using Serilog;

namespace K2RL.Trainer.Rl;

/// <summary>Why an RL run stopped.</summary>
public enum RlStopReason
{
    Completed,
    MaxIterations,
    Interrupted,
    TooManyBadSteps,

    /// <summary>Job control's stop: checkpointed like <see cref="Interrupted"/>, but asked for, so a clean exit.</summary>
    Stopped,
}

public sealed record RlResult(RlStopReason Reason, long Iteration, string? Checkpoint, RlMetrics? Last);

/// <summary>Receives each iteration's metrics (the CLI draws its progress from them).</summary>
public interface IRlObserver
{
    void OnStart(long firstIteration, long totalIterations);

    void OnIteration(RlMetrics metrics, long totalIterations);
}

/// <summary>
/// The co-located RL job (SPEC §3–4), one process: per iteration the controller (1) takes prompts from the weighted
/// environment mix and generates K responses each through the rollout engine (multi-turn, token-in/token-out;
/// episodes over the iteration's token budget pause and continue later under newer weights), (2) scores them
/// (verifier, or the self-critique rubric reward), applies budget control, (3) trains the K2 objective plus PTX with
/// one <see cref="TrainStep"/> per mini-batch (MuonClip, QK-Clip, the bias rule), (4) pushes the new weights with a
/// new version through the checkpoint engine's publisher, and appends a metrics.jsonl line. Checkpoints follow the
/// run-directory contract; with the same seed a resumed run reproduces the uninterrupted one iteration for iteration.
/// </summary>
public sealed partial class RlJob : IDisposable
{
    public const string ConfigFile = TrainingFiles.ConfigFile;
    public const string StateFile = "rl_state.json";

    private readonly RlJobConfig job;
    private readonly GymRegistry registry;
    private readonly RunDirectory run;
    private readonly ILogger log;
    private readonly K2ModelAdapter model;
    private readonly BpeTokenizer tokenizer;
    private readonly TrainStep trainStep;
    private readonly InProcessWeightChannel channel = new();
    private readonly RolloutEngine engine;
    private readonly EpisodeRunner runner;
    private readonly IEpisodeGeneration generation;
    private readonly BatchPacker ptx;
    private readonly RlCritic critic;
    private bool criticRefusalLogged;
    private readonly string jobSha;
    private readonly string baseDir;
    private long iteration;
    private long version;
    private int badInARow;
    private List<PausedEpisode> paused = [];
    private List<Trajectory> waiting = [];   // finished members of groups that still have paused members

    public RlJob(RlJobConfig job, string runDir, GymRegistry registry, ILogger? log = null)
    {
        this.job = job;
        this.registry = registry;
        this.log = log ?? Serilog.Core.Logger.None;
        run = new RunDirectory(runDir, this.log);
        var checkpoint = ModelCheckpoint.Load(job.InitFrom, warn: w => this.log.Warning("{Warning}", w));
        baseDir = checkpoint.Directory;
        if (job.ModelPath is { } path)
        {
            var wanted = ModelConfig.Load(path);
            if (wanted.ToJson() != checkpoint.Config.ToJson())
            {
                throw new ConfigException($"{job.File}: \"model\" {path} does not match the base checkpoint's config ({Path.Combine(baseDir, ConfigFile)})");
            }
        }

        tokenizer = checkpoint.Tokenizer
            ?? throw new ConfigException($"{baseDir} holds no tokenizer: RL needs the tokenizer the base was trained with");
        model = new K2ModelAdapter(new K2Model(checkpoint.Config));
        checkpoint.Parameters.CopyTo(model.Parameters, 0);
        trainStep = new TrainStep(model, job.Optimizer, job.BiasGamma, job.Threads);

        int maxBatch = Math.Clamp(job.PromptsPerIteration * job.SamplesPerPrompt, 1, 256);
        var decoder = new ModelDecoder(checkpoint.Config, maxBatch, precision: job.RolloutWeights,
            recordRouting: job.RoutingReplay && checkpoint.Config.RoutingStride > 0);
        // The base goes out as version 0 through the same push as every later version; a resume pushes its own.
        engine = new RolloutEngine(decoder, new EngineOptions
        {
            Detokenize = ids => tokenizer.Decode(ids.ToArray()),
            SampleableVocab = tokenizer.VocabSize,
        }, channel, initialVersion: -1);
        channel.Publish(0, model.Parameters);
        engine.SyncWeights();
        var envs = job.Envs.ToDictionary(e => e.Name, StringComparer.Ordinal);
        runner = new EpisodeRunner(engine, tokenizer, registry.CreateEnvironment, EpisodeOptionsFor(job.Envs[0]),
            name => EpisodeOptionsFor(envs[name]));
        generation = job.Workers is { } url
            ? RedisEpisodeGeneration.StartAsync(new RedisGenerationOptions { Url = url, Transport = job.WeightTransport, ShmName = job.ShmName, Prefix = job.RedisQueue + ":" },
                checkpoint.Config, tokenizer, job.RolloutWeights, name => EpisodeOptionsFor(envs[name]), this.log).GetAwaiter().GetResult()
            : new EmbeddedGeneration(runner);
        if (generation is RedisEpisodeGeneration redis)
        {
            WorkerPool = new RedisWorkerPool(redis);
        }

        var corpus = SyntheticCorpus.CreateDefault();
        ptx = new BatchPacker(new DocumentStream(job.Seed ^ 0x5054584E, job.PtxData, corpus), new BpeTextEncoder(tokenizer), checkpoint.Config.VocabSize);
        critic = new RlCritic(job, registry, engine, tokenizer, this.log);
        jobSha = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(job.SourceText)));
    }

    public RunDirectory Run => run;

    public long Iteration => iteration;

    public K2ModelAdapter Model => model;

    public RolloutEngine Engine => engine;

    public BpeTokenizer Tokenizer => tokenizer;

    /// <summary>Where step 1 generates: in-process, or a <see cref="RedisEpisodeGeneration"/> (its StatsAsync: queue depths, workers).</summary>
    public IEpisodeGeneration Generation => generation;

    public void Dispose()
    {
        critic.Dispose();
        if (generation is IAsyncDisposable remote)
        {
            remote.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    private EpisodeOptions EpisodeOptionsFor(RlEnvSettings e) => new()
    {
        MaxResponseTokens = e.MaxResponseTokens,
        MaxTurns = e.MaxTurns,
        StepTimeout = TimeSpan.FromSeconds(job.StepTimeoutSeconds),
        EpisodeTimeout = TimeSpan.FromSeconds(e.EpisodeTimeoutSeconds),
        Seed = job.Seed,
        TopP = job.TopP,
    };

    /// <summary>
    /// Runs until the job's iteration count, <paramref name="maxIterations"/> (an absolute count), a stop request, or
    /// too many non-finite steps in a row. A stop during generation or scoring abandons that iteration (its prompts
    /// are drawn again after a resume) and checkpoints the state at its start, so the resumed run is exact. With
    /// <paramref name="control"/>, job control's pause, drain and stop take effect between iterations (its stop as this
    /// method's <paramref name="stop"/> does) and it is told each iteration's progress.
    /// </summary>
    public async Task<RlResult> TrainAsync(bool resume, long? maxIterations, CancellationToken stop, IRlObserver? observer = null,
        JobControlState? control = null)
    {
        Prepare(resume);
        long total = job.Iterations;
        long end = Math.Min(total, maxIterations ?? total);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(stop, control?.StopToken ?? CancellationToken.None);
        stop = linked.Token;
        control?.Report(iteration, total, version, null, run.LatestCheckpoint());
        observer?.OnStart(iteration, total);
        RlMetrics? last = null;
        while (iteration < end)
        {
            if (await AtBoundaryAsync(control, stop))
            {
                return Stop(control?.StopRequested == true ? RlStopReason.Stopped : RlStopReason.Interrupted, last);
            }

            RlMetrics? m;
            try
            {
                m = await IterateAsync(stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                log.Warning("stop requested during iteration {Iteration}: it is abandoned and will run again on resume", iteration + 1);
                return Stop(control?.StopRequested == true ? RlStopReason.Stopped : RlStopReason.Interrupted, last);
            }

            last = m;
            // Deliberate twin of Pretrainer.Train's step tail (metrics line, bad-step stop, periodic checkpoint): each loop returns its own result.
            File.AppendAllText(run.Metrics, m.ToJson() + "\n");
            observer?.OnIteration(m, total);
            if (badInARow >= job.MaxBadSteps)
            {
                log.Error("{Bad} non-finite steps in a row: stopping; the last good checkpoint is kept", badInARow);
                return new RlResult(RlStopReason.TooManyBadSteps, iteration, run.LatestCheckpoint(), last);
            }

            if (iteration % job.CheckpointEvery == 0 && iteration < end)
            {
                SaveCheckpoint();
            }

            control?.Report(iteration, total, version, m.ToJson(), run.LatestCheckpoint());
        }

        return Stop(iteration >= total ? RlStopReason.Completed : RlStopReason.MaxIterations, last);
    }

    private RlResult Stop(RlStopReason reason, RlMetrics? last)
    {
        string dir = SaveCheckpoint();
        log.Information("{Reason} at iteration {Iteration}: checkpoint {Dir}", reason, iteration, dir);
        return new RlResult(reason, iteration, dir, last);
    }

    private async Task<RlMetrics> IterateAsync(CancellationToken stop)
    {
        long t0 = Stopwatch.GetTimestamp();
        double temperature = job.Temperature.At(iteration);

        // 1. Generate: this iteration's fresh prompts, K responses each, and the episodes paused before.
        var fresh = PromptMix.Draw(job, iteration);
        var batch = await generation.RunAsync(fresh, paused, (float)temperature, job.IterationTokenBudget > 0 ? job.IterationTokenBudget : long.MaxValue,
            new PolicyWeights(version, model.Parameters), stop);
        double generateS = Stopwatch.GetElapsedTime(t0).TotalSeconds;

        // 2. Score the groups whose K responses have all finished; the rest wait for their paused members.
        long t1 = Stopwatch.GetTimestamp();
        var groups = CompleteGroups(waiting.Concat(batch.Finished), out var stillWaiting);
        int refusedBefore = critic.Refused;
        var scored = await critic.ScoreAsync(groups, stop);
        var calibration = await critic.CalibrateAsync(scored, stop);
        int refused = critic.Refused - refusedBefore;
        if (refused > 0 && !criticRefusalLogged)
        {
            criticRefusalLogged = true;
            log.Warning("the critic's engine refused {Refused} comparison prompts in iteration {Iteration} ({Reason}): their verdicts " +
                "count as unparseable; critic.rubric_detail: brief shortens the prompt (metric critic_refused)", refused, iteration + 1, critic.LastRefusal);
        }
        double scoreS = Stopwatch.GetElapsedTime(t1).TotalSeconds;

        // Past this point the iteration is not abandoned: the weights change.
        long t2 = Stopwatch.GetTimestamp();
        var train = Train(scored, calibration.Examples);
        double trainS = Stopwatch.GetElapsedTime(t2).TotalSeconds;

        long t3 = Stopwatch.GetTimestamp();
        if (train.Updated)
        {
            version++;
            channel.Publish(version, model.Parameters);
            engine.SyncWeights();
        }

        double pushS = Stopwatch.GetElapsedTime(t3).TotalSeconds;
        paused = [.. batch.Paused];
        waiting = stillWaiting;
        iteration++;

        IReadOnlyDictionary<string, double>? heldOut = null;
        if (job.EvalEvery > 0 && (iteration % job.EvalEvery == 0 || iteration == job.Iterations))
        {
            heldOut = await EvaluateAsync(stop: CancellationToken.None);
        }

        double total = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        return Metrics(temperature, scored, batch, train, calibration, heldOut) with
        {
            GenerateS = generateS,
            ScoreS = scoreS,
            TrainS = trainS,
            PushS = pushS,
            CriticRefused = refused,
            OtherS = Math.Max(0, total - generateS - scoreS - trainS - pushS),
            IterationS = total,
        };
    }

    /// <summary>Groups (same iteration, env, task) holding all K responses, in id order; the others are returned in <paramref name="incomplete"/>.</summary>
    private List<ResponseGroup> CompleteGroups(IEnumerable<Trajectory> finished, out List<Trajectory> incomplete)
    {
        var complete = new List<ResponseGroup>();
        incomplete = [];
        foreach (var g in finished.GroupBy(t => PromptMix.GroupOf(t.Id), StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var members = g.OrderBy(t => t.Sample).ToList();
            if (members.Count >= job.SamplesPerPrompt)
            {
                var env = job.Envs.First(e => e.Name == members[0].Env);
                complete.Add(new ResponseGroup(g.Key, env, members));
            }
            else
            {
                incomplete.AddRange(members);
            }
        }

        return complete;
    }

    /// <summary>Greedy held-out accuracy per env and difficulty (fixed tasks: seeds 0..EvalTasks−1 of the held-out split).</summary>
    public async Task<IReadOnlyDictionary<string, double>> EvaluateAsync(CancellationToken stop) =>
        await HeldOutEval.GreedyAccuracyAsync(engine, tokenizer, registry,
            job.Envs.Where(e => critic.IsVerifiable(e)).Select(e => (e.Name, e.MaxResponseTokens)), job.EvalDifficulties, job.EvalTasks, job.Seed, stop);
}

/// <summary>The K responses to one prompt, with the environment's settings.</summary>
public sealed record ResponseGroup(string Key, RlEnvSettings Env, IReadOnlyList<Trajectory> Members);
