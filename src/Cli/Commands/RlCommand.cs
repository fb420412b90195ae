using System.CommandLine;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Common.Logging;
using K2RL.Common.Rpc;
using K2RL.Gym;
using K2RL.Trainer.Pretraining;
using K2RL.Trainer.Rl;
using Serilog;
using Spectre.Console;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl rl --job FILE --run-dir DIR [--resume] [--max-iterations N] [--control HOST:PORT] [--control-token-file PATH]
/// [--metrics HOST:PORT]</c>: the co-located RL job, answering <c>k2rl job</c> (docs/OPERATIONS.md); and <c>k2rl demo</c>:
/// base pretraining (or <c>--base DIR</c>), then RL, then the held-out table before/after. Results go to stdout (one
/// JSON object), progress and logs to stderr. Ctrl-C and SIGTERM write a checkpoint and exit.
/// </summary>
public sealed class RlCommand : ICommandProvider
{
    public string Group => "";

    internal sealed record RlOptions(string Job, string RunDir, bool Resume, long? MaxIterations, string? InitFrom = null,
        string Control = DefaultControl, string? ControlTokenFile = null, string? Metrics = null);

    internal const string DefaultControl = "127.0.0.1:0";

    public IEnumerable<Command> Build(CliContext context)
    {
        var job = new Option<string>("--job") { Description = "RL job file (YAML), e.g. configs/jobs/rl-nano.yaml", Required = true };
        var runDir = new Option<string>("--run-dir") { Description = "Run directory (checkpoints, metrics.jsonl, logs)", Required = true };
        var resume = new Option<bool>("--resume") { Description = "Continue from the run directory's newest good checkpoint" };
        var maxIterations = new Option<long?>("--max-iterations") { Description = "Stop (with a checkpoint) once this many iterations are done" };
        var control = new Option<string>("--control")
        {
            Description = "Serve job control (k2rl job ...) and gRPC health on HOST:PORT; a non-loopback address requires a token",
            DefaultValueFactory = _ => DefaultControl,
        };
        var tokenFile = new Option<string?>("--control-token-file") { Description = $"The job-control token (first line); else ${BearerToken.EnvironmentVariable}" };
        var metrics = new Option<string?>("--metrics") { Description = "Serve Prometheus metrics on http://HOST:PORT/metrics" };
        var command = new Command("rl", "RL post-training: rollouts, rewards, the K2 objective + PTX, MuonClip, weight push")
            { job, runDir, resume, maxIterations, control, tokenFile, metrics };
        command.SetAction(parse => Run(context, new RlOptions(parse.GetValue(job)!, parse.GetValue(runDir)!, parse.GetValue(resume), parse.GetValue(maxIterations),
            Control: parse.GetValue(control)!, ControlTokenFile: parse.GetValue(tokenFile), Metrics: parse.GetValue(metrics))));
        yield return command;
        yield return DemoCommand(context);
    }

    internal static int Run(CliContext context, RlOptions options)
    {
        var (result, _, _) = RunJob(context, options, evaluateBefore: false);
        context.Out.WriteLine(ResultJson(result).ToJsonString());
        return ExitCode(result);
    }

    private static int ExitCode(RlResult result) => result.Reason switch
    {
        RlStopReason.Completed or RlStopReason.MaxIterations or RlStopReason.Stopped => 0,
        RlStopReason.Interrupted => 130,
        _ => 1,
    };

    private static JsonObject ResultJson(RlResult r) => new()
    {
        ["reason"] = r.Reason.ToString().ToLowerInvariant(),
        ["iteration"] = r.Iteration,
        ["checkpoint"] = r.Checkpoint,
        ["last"] = r.Last is null ? null : JsonNode.Parse(r.Last.ToJson()),
    };

    /// <summary>Runs the job with signal handling and a progress display; optionally the held-out evaluation of the base first.</summary>
    internal static (RlResult Result, IReadOnlyDictionary<string, double>? Before, IReadOnlyDictionary<string, double>? After) RunJob(
        CliContext context, RlOptions options, bool evaluateBefore)
    {
        if (options.MaxIterations is <= 0)
        {
            throw new ConfigException($"--max-iterations must be > 0, got {options.MaxIterations}");
        }

        var operations = new RlOperationsOptions(HostPort.Parse(options.Control, "--control"), BearerToken.Load(options.ControlTokenFile, "--control-token-file"),
            options.Metrics is null ? null : HostPort.Parse(options.Metrics, "--metrics"));
        JobControlHost.CheckPolicy(operations.Control, operations.Token);   // before the model loads: a refusal is immediate
        var registry = GymRegistry.CreateDefault();
        var corpus = SyntheticCorpus.CreateDefault();
        var config = RlJobConfig.Load(options.Job, registry.Environments.Select(e => e.Name).ToArray(), corpus.Kinds, options.InitFrom);
        var run = new K2RL.Trainer.Checkpointing.RunDirectory(options.RunDir);
        run.Create();
        using var log = K2Log.Create(context.LogLevel, Path.Combine(run.Logs, "rl.clef"));
        using var rl = new RlJob(config, options.RunDir, registry, log);

        using var stop = new StopSignal(log, "stopping and writing a checkpoint");
        var ops = RlOperations.StartAsync(rl, operations, log).GetAwaiter().GetResult();
        try
        {
            return Train(context, options, evaluateBefore, rl, run, ops, stop.Token, log);
        }
        finally
        {
            ops.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    private static (RlResult Result, IReadOnlyDictionary<string, double>? Before, IReadOnlyDictionary<string, double>? After) Train(CliContext context,
        RlOptions options, bool evaluateBefore, RlJob rl, K2RL.Trainer.Checkpointing.RunDirectory run, RlOperations ops, CancellationToken stop, ILogger log)
    {
        IReadOnlyDictionary<string, double>? before = null;
        if (evaluateBefore)
        {
            // The base's figures are measured once, before the first iteration, and kept in the run directory: a resumed
            // demo reads them instead of measuring its current weights.
            string baseFile = Path.Combine(run.Root, "held_out_base.json");
            if (options.Resume && File.Exists(baseFile))
            {
                before = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, double>>(File.ReadAllText(baseFile));
            }
            else
            {
                log.Information("held-out evaluation of the base");
                before = rl.EvaluateAsync(CancellationToken.None).GetAwaiter().GetResult();
                K2RL.Model.IO.AtomicFile.WriteAllText(baseFile, System.Text.Json.JsonSerializer.Serialize(before));
            }
        }

        RlResult result;
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(context.Error) });
        if (console.Profile.Capabilities.Interactive && !Console.IsErrorRedirected)
        {
            result = null!;
            console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("rl", maxValue: rl.TotalIterations);
                    result = rl.TrainAsync(options.Resume, options.MaxIterations, stop, ops.Observe(new SpectreObserver(task)), ops.Control).GetAwaiter().GetResult();
                });
        }
        else
        {
            result = rl.TrainAsync(options.Resume, options.MaxIterations, stop, ops.Observe(new LogObserver(log)), ops.Control).GetAwaiter().GetResult();
        }

        IReadOnlyDictionary<string, double>? after = null;
        if (evaluateBefore && result.Reason is RlStopReason.Completed or RlStopReason.MaxIterations)
        {
            after = result.Last?.HeldOut ?? rl.EvaluateAsync(CancellationToken.None).GetAwaiter().GetResult();
        }

        return (result, before, after);
    }

    internal sealed record DemoOptions(string RunDir, string? Base, string PretrainJob, string RlJob, bool Resume, string? SftJob = null, string? SftData = null,
        bool Sft = false, string SynthJob = DefaultSynthJob);

    internal const string DefaultSynthJob = "configs/jobs/synth-nano.yaml";

    private static Command DemoCommand(CliContext context)
    {
        var runDir = new Option<string>("--run-dir") { Description = "Where the demo writes (base/, sft/ and rl/ run directories)", DefaultValueFactory = _ => "runs/demo" };
        var baseDir = new Option<string?>("--base") { Description = "Use this pretrain run or checkpoint directory as the base instead of pretraining one" };
        var pretrainJob = new Option<string>("--pretrain-job") { Description = "The base's job file", DefaultValueFactory = _ => "configs/jobs/pretrain-nano.yaml" };
        var rlJob = new Option<string>("--rl-job")
        {
            Description = "The RL job file (its init_from is replaced by the base, or by the SFT run)", DefaultValueFactory = _ => "configs/jobs/rl-nano.yaml",
        };
        var sftJob = new Option<string?>("--sft-job")
        {
            Description = "Run SFT between the base and RL with this job file (its init_from is replaced by the base; its data.path by --sft-data when given)",
        };
        var sftData = new Option<string?>("--sft-data")
        {
            Description = "Run SFT between the base and RL on this dataset (k2rl.sft.v1 .jsonl file or directory), with --sft-job or configs/jobs/sft-nano.yaml",
        };
        var sft = new Option<bool>("--sft")
        {
            Description = "Run SFT between the base and RL on data the synthesis pipeline makes first (--synth-job) in RUN_DIR/sft-data, unless --sft-data names a dataset",
        };
        var synthJob = new Option<string>("--synth-job") { Description = "The synthesis job of --sft", DefaultValueFactory = _ => DefaultSynthJob };
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted demo (every stage resumes)" };
        var command = new Command("demo", "The whole pipeline: pretrain a k2-nano base, SFT it (--sft, or --sft-data / --sft-job), RL it, and print held-out accuracy along the way")
            { runDir, baseDir, pretrainJob, rlJob, sft, synthJob, sftJob, sftData, resume };
        command.SetAction(parse => Demo(context, new DemoOptions(parse.GetValue(runDir)!, parse.GetValue(baseDir), parse.GetValue(pretrainJob)!,
            parse.GetValue(rlJob)!, parse.GetValue(resume), parse.GetValue(sftJob), parse.GetValue(sftData), parse.GetValue(sft), parse.GetValue(synthJob)!)));
        return command;
    }

    /// <summary>
    /// base/ (pretraining, or --base), then sft/ when --sft-data or --sft-job is given (the base's held-out accuracy
    /// first, then SFT from it), then rl/ from the newest stage; the table holds each key's base, SFT (when run),
    /// before-RL and after-RL accuracy. A finished stage is resumed (a no-op) on a rerun.
    /// </summary>
    internal static int Demo(CliContext context, DemoOptions o)
    {
        string baseDir = o.Base ?? Path.Combine(o.RunDir, "base");
        if (o.Base is null)
        {
            bool done = File.Exists(Path.Combine(baseDir, K2RL.Trainer.Checkpointing.RunDirectory.LatestName));
            int code = PretrainCommand.Run(new CliContext(TextWriter.Null, context.Error),
                new PretrainCommand.PretrainOptions(o.PretrainJob, baseDir, Resume: done || o.Resume, MaxSteps: null));
            if (code != 0)
            {
                return code;
            }
        }

        string rlInit = baseDir;
        string? sftDir = null;
        K2RL.Trainer.Sft.SftResult? sft = null;
        IReadOnlyDictionary<string, double>? baseHeldOut = null;
        if (o.Sft && o.SftData is null)
        {
            // The synthesis stage: a finished one (its summary.json is written last) is kept on a rerun.
            string data = Path.Combine(o.RunDir, "sft-data");
            if (!File.Exists(Path.Combine(data, K2RL.Gym.Synthesis.SynthesisPipeline.SummaryFile)))
            {
                int code = SynthCommand.Run(new CliContext(TextWriter.Null, context.Error), new SynthCommand.Options { Job = o.SynthJob, Out = data })
                    .GetAwaiter().GetResult();
                if (code != 0)
                {
                    return code;
                }
            }

            o = o with { SftData = data };
        }

        if (o.SftData is not null || o.SftJob is not null)
        {
            sftDir = Path.Combine(o.RunDir, "sft");
            bool done = File.Exists(Path.Combine(sftDir, K2RL.Trainer.Checkpointing.RunDirectory.LatestName));
            (sft, baseHeldOut) = SftCommand.RunJob(context, new SftCommand.SftOptions(o.SftJob ?? "configs/jobs/sft-nano.yaml", sftDir,
                done || o.Resume, null, o.SftData, baseDir), evaluateBase: true);
            int code = SftCommand.ExitCode(sft);
            if (code != 0)
            {
                return code;
            }

            rlInit = sftDir;
        }

        string rlDir = Path.Combine(o.RunDir, "rl");
        bool resumeRl = o.Resume && File.Exists(Path.Combine(rlDir, K2RL.Trainer.Checkpointing.RunDirectory.LatestName));
        var (result, before, after) = RunJob(context, new RlOptions(o.RlJob, rlDir, resumeRl, null, rlInit), evaluateBefore: true);
        var table = new JsonObject();
        var keys = (before?.Keys ?? []).Union(after?.Keys ?? []).Union(baseHeldOut?.Keys ?? []).Union(sft?.HeldOut?.Keys ?? []);
        foreach (string key in keys.Order(StringComparer.Ordinal))
        {
            double? b = At(before, key), a = At(after, key), z = At(baseHeldOut, key), f = At(sft?.HeldOut, key);
            var row = new JsonObject();
            if (sftDir is not null)
            {
                row["base"] = z;
                row["sft"] = f;
                context.Error.Write($"{key,-20} base {Pct(z),7}  sft {Pct(f),7}  ");
            }
            else
            {
                context.Error.Write($"{key,-20} ");
            }

            row["before"] = b;
            row["after"] = a;
            table[key] = row;
            context.Error.WriteLine($"before {Pct(b),7}  after {Pct(a),7}");
        }

        PlotCommand.WarnIfNoFonts(context);
        K2RL.Trainer.Plotting.RlPlots.Draw(rlDir);
        if (sftDir is not null)
        {
            K2RL.Trainer.Plotting.RunPlots.Draw([sftDir], Path.Combine(sftDir, "plots"));
        }

        var json = ResultJson(result);
        json["base"] = Path.GetFullPath(baseDir);
        json["sft_run_dir"] = sftDir is null ? null : Path.GetFullPath(sftDir);
        json["rl_run_dir"] = Path.GetFullPath(rlDir);
        json["held_out"] = table;
        context.Out.WriteLine(json.ToJsonString());
        return ExitCode(result);
    }

    private static double? At(IReadOnlyDictionary<string, double>? d, string key) => d is not null && d.TryGetValue(key, out double v) ? v : null;

    private static string Pct(double? v) => v is { } x ? $"{100 * x:F1}%" : "-";

    private sealed class SpectreObserver(ProgressTask task) : IRlObserver
    {
        public void OnStart(long firstIteration, long totalIterations) => task.Value = firstIteration;

        public void OnIteration(RlMetrics m, long totalIterations)
        {
            task.Value = m.Iteration;
            task.Description = $"iteration {m.Iteration}/{totalIterations} reward {m.RewardMean:F3} accuracy {m.Accuracy:P1} T {m.Temperature:F2}";
        }
    }

    private sealed class LogObserver(ILogger log) : IRlObserver
    {
        private long first;
        private DateTime start;

        public void OnStart(long firstIteration, long totalIterations)
        {
            first = firstIteration;
            start = DateTime.UtcNow;
            log.Information("RL from iteration {First} to {Total}", firstIteration, totalIterations);
        }

        public void OnIteration(RlMetrics m, long totalIterations)
        {
            var elapsed = DateTime.UtcNow - start;
            double perIteration = elapsed.TotalSeconds / Math.Max(1, m.Iteration - first);
            var eta = TimeSpan.FromSeconds(perIteration * (totalIterations - m.Iteration));
            log.Information("iteration {Iteration}/{Total} reward {Reward:F3} accuracy {Accuracy:P1} T {Temperature:F3} loss-rl {LossRl:G4} ptx {LossPtx:F4} mismatch {Mismatch:E2} tokens {Tokens} paused {Paused} {Seconds:F1} s/it elapsed {Elapsed:hh\\:mm\\:ss} eta {Eta:hh\\:mm\\:ss}",
                m.Iteration, totalIterations, m.RewardMean, m.Accuracy, m.Temperature, m.LossRl, m.LossPtx, m.LogprobMismatchMean,
                m.TokensGenerated, m.PartialPaused, m.IterationS, elapsed, eta);
            if (m.HeldOut is { } h)
            {
                log.Information("held-out at iteration {Iteration}: {HeldOut}", m.Iteration,
                    string.Join(" ", h.Select(kv => $"{kv.Key}={100 * kv.Value:F1}%")));
            }
        }
    }
}
