using System.CommandLine;
using K2RL.Common;
using K2RL.Common.Logging;
using K2RL.Gym;
using K2RL.Trainer.Pretraining;
using Serilog;
using Spectre.Console;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl pretrain --job FILE --run-dir DIR [--resume] [--max-steps N]</c>: the pretraining job. Results go to
/// stdout (one JSON object), progress and logs to stderr. Ctrl-C and SIGTERM write a checkpoint and exit.
/// </summary>
public sealed class PretrainCommand : ICommandProvider
{
    public string Group => "";

    internal sealed record PretrainOptions(string Job, string RunDir, bool Resume, long? MaxSteps);

    public IEnumerable<Command> Build(CliContext context)
    {
        var job = new Option<string>("--job") { Description = "Job file (YAML), e.g. configs/jobs/pretrain-nano.yaml", Required = true };
        var runDir = new Option<string>("--run-dir") { Description = "Run directory (checkpoints, metrics.jsonl, logs)", Required = true };
        var resume = new Option<bool>("--resume") { Description = "Continue from the run directory's newest good checkpoint" };
        var maxSteps = new Option<long?>("--max-steps") { Description = "Stop (with a checkpoint) once this many steps are done" };
        var command = new Command("pretrain", "Pretrain a K2-style MoE with MuonClip (or AdamW) from a job file") { job, runDir, resume, maxSteps };
        // A synchronous action: the job handles SIGINT/SIGTERM itself so it can checkpoint before exiting.
        command.SetAction(parse => Run(context, new PretrainOptions(parse.GetValue(job)!, parse.GetValue(runDir)!, parse.GetValue(resume), parse.GetValue(maxSteps))));
        yield return command;
        yield return EvalCommand(context);
    }

    internal sealed record EvalOptions(string Checkpoint, string[] Kinds, int Tasks, int[] Difficulties, int MaxNewTokens, long Seed);

    private static Command EvalCommand(CliContext context)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = CliContext.CheckpointHelp, Required = true };
        var kinds = new Option<string[]>("--task") { Description = "Task kinds (default: arithmetic countdown list_ops)", AllowMultipleArgumentsPerToken = true };
        var tasks = new Option<int>("--tasks") { Description = "Held-out tasks per kind", DefaultValueFactory = _ => 50 };
        var difficulty = new Option<int[]>("--difficulty")
        {
            Description = "Task difficulties, each reported on its own (default: 1 2 3)", AllowMultipleArgumentsPerToken = true,
        };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Greedy decoding budget per response", DefaultValueFactory = _ => 256 };
        var seed = new Option<long>("--seed") { Description = "First task seed", DefaultValueFactory = _ => 1 };
        var command = new Command("eval-base", "Held-out accuracy of a pretrained base on the synthetic tasks (greedy decoding, Gym verifiers)")
            { checkpoint, kinds, tasks, difficulty, maxNew, seed };
        command.SetAction(parse => Eval(context, new EvalOptions(parse.GetValue(checkpoint)!, parse.GetValue(kinds) ?? [],
            parse.GetValue(tasks), parse.GetValue(difficulty) ?? [], parse.GetValue(maxNew), parse.GetValue(seed))));
        return command;
    }

    internal static int Eval(CliContext context, EvalOptions options)
    {
        var checkpoint = K2RL.Model.IO.ModelCheckpoint.Load(options.Checkpoint, warn: context.Warn);
        string dir = checkpoint.Directory;
        var config = checkpoint.Config;
        var parameters = checkpoint.Parameters;
        var tokenizer = checkpoint.Tokenizer
            ?? throw new CorruptFileException(dir, "holds no tokenizer (tiktoken.model, tokenizer_config.json): eval-base needs the one the base was trained with");
        string[] kinds = options.Kinds.Length > 0 ? options.Kinds : ["arithmetic", "countdown", "list_ops"];
        int[] difficulties = options.Difficulties.Length > 0 ? options.Difficulties : [1, 2, 3];
        if (difficulties.Any(d => d < 1))
        {
            throw new ConfigException($"--difficulty must be >= 1, got {string.Join(' ', difficulties)}");
        }

        var results = HeldOutEval.Run(config, parameters, tokenizer, kinds, options.Tasks, difficulties, options.MaxNewTokens,
            options.Seed, line => context.Error.WriteLine(line));
        foreach (var r in results)
        {
            context.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(new
            {
                kind = r.Kind,
                difficulty = r.Difficulty,
                tasks = r.Tasks,
                correct = r.Correct,
                accuracy = Math.Round(r.Accuracy, 4),
                with_answer_line = r.WithAnswerLine,
                mean_response_tokens = Math.Round(r.MeanResponseTokens, 1),
                checkpoint = dir,
            }));
        }

        return 0;
    }

    internal static int Run(CliContext context, PretrainOptions options, Func<K2RL.Model.ModelConfig, ITrainableModel>? modelFactory = null)
    {
        var corpus = SyntheticCorpus.CreateDefault();
        var job = JobConfig.Load(options.Job, corpus.Kinds);   // every check before any work
        if (options.MaxSteps is <= 0)
        {
            throw new ConfigException($"--max-steps must be > 0, got {options.MaxSteps}");
        }

        var run = new K2RL.Trainer.Checkpointing.RunDirectory(options.RunDir);
        run.Create();
        using var log = K2Log.Create(context.LogLevel, Path.Combine(run.Logs, "pretrain.clef"));
        var encoder = CreateEncoder(job, corpus, run.Root, log);
        var model = (modelFactory ?? TrainableModels.Create)(job.Model);
        var trainer = new Pretrainer(job, options.RunDir, model, corpus, encoder, log);

        using var stop = new StopSignal(log, "stopping after this step and writing a checkpoint");

        PretrainResult result;
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(context.Error) });
        if (console.Profile.Capabilities.Interactive && !Console.IsErrorRedirected)
        {
            result = null!;
            console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("pretrain", maxValue: Math.Min(job.Steps, options.MaxSteps ?? job.Steps));
                    result = trainer.Train(options.Resume, options.MaxSteps, stop.Token, new SpectreObserver(task));
                });
        }
        else
        {
            result = trainer.Train(options.Resume, options.MaxSteps, stop.Token, new LogObserver(log, options.MaxSteps));
        }

        context.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(new
        {
            reason = result.Reason.ToString().ToLowerInvariant(),
            step = result.Step,
            checkpoint = result.Checkpoint,
            loss = float.IsFinite(result.LastLoss) ? result.LastLoss : (float?)null,
        }));
        return result.Reason switch
        {
            StopReason.Completed or StopReason.MaxSteps => 0,
            StopReason.Interrupted => 130,
            _ => 1,
        };
    }

    /// <summary>The job's tokenizer; "train" trains once per run and keeps it in RUN_DIR/tokenizer.</summary>
    private static BpeTextEncoder CreateEncoder(JobConfig job, SyntheticCorpus corpus, string runDir, ILogger log)
    {
        string saved = Path.Combine(runDir, "tokenizer");
        if (job.Tokenizer == "train" && File.Exists(Path.Combine(saved, K2RL.Model.Tokenization.BpeTokenizer.ConfigFileName)))
        {
            return BpeTextEncoder.Create(saved, job.Model.VocabSize, () => []);
        }

        var encoder = BpeTextEncoder.Create(job.Tokenizer, job.Model.VocabSize, () => TokenizerSample(job, corpus),
            line => log.Information("tokenizer: {Line}", line), job.SplitDigits);
        if (job.Tokenizer == "train")
        {
            encoder.Tokenizer.Save(saved);
        }

        return encoder;
    }

    /// <summary>Documents for tokenizer training: a separate stream (seed + 1) so it does not touch the training cursor.</summary>
    private static IEnumerable<string> TokenizerSample(JobConfig job, SyntheticCorpus corpus)
    {
        var docs = new DocumentStream(job.Seed + 1, job.Data, corpus);
        for (int i = 0; i < 4000; i++)
        {
            yield return docs.Next().Text;
        }
    }

    internal sealed class SpectreObserver(ProgressTask task) : IStepObserver
    {
        public void OnStart(long firstStep, long totalSteps) => task.Value = firstStep;

        public void OnStep(StepMetrics m, long totalSteps)
        {
            task.Value = m.Step;
            task.Description = $"step {m.Step}/{totalSteps} loss {m.Loss:F4} max-logit {m.MaxLogit:F1} {m.TokensPerS:F0} tok/s";
        }
    }

    /// <summary>
    /// Progress as log lines, for a stderr that is not a terminal (a file, a pipe): about 50 lines a run, each with the
    /// time since this process started training and the estimated time to the last step it will run (the job's step
    /// count, or --max-steps when that comes first), from the mean step time so far.
    /// </summary>
    internal sealed class LogObserver(ILogger log, long? maxSteps, string what = "pretraining") : IStepObserver
    {
        private readonly System.Diagnostics.Stopwatch clock = new();
        private long every = 1;
        private long first;
        private long end;

        public void OnStart(long firstStep, long totalSteps)
        {
            first = firstStep;
            end = Math.Min(totalSteps, maxSteps ?? totalSteps);
            every = Math.Max(1, totalSteps / 50);
            if (end < totalSteps)
            {
                log.Information("{What:l} from step {First} to {End} (--max-steps; the job has {Total})", what, firstStep, end, totalSteps);
            }
            else
            {
                log.Information("{What:l} from step {First} to {Total}", what, firstStep, totalSteps);
            }

            clock.Restart();
        }

        public void OnStep(StepMetrics m, long totalSteps)
        {
            if (m.Step % every == 0 || m.Step == end)
            {
                var elapsed = clock.Elapsed;
                var eta = elapsed / Math.Max(1, m.Step - first) * Math.Max(0, end - m.Step);
                log.Information("step {Step}/{Total} loss {Loss:F4} lr {Lr:G3} grad-norm {Norm:F3} max-logit {MaxLogit:F1} clipped {Clipped} balance {Balance:F2} {Tps:F0} tok/s elapsed {Elapsed:l} eta {Eta:l}",
                    m.Step, totalSteps, m.Loss, m.Lr, m.GradNorm, m.MaxLogit, m.ClippedHeads, m.ExpertLoadMaxOverMean, m.TokensPerS,
                    Clock(elapsed), Clock(eta));
            }
        }

        /// <summary>h:mm:ss, hours unbounded.</summary>
        internal static string Clock(TimeSpan t) => $"{(long)t.TotalHours}:{t.Minutes:D2}:{t.Seconds:D2}";
    }
}
