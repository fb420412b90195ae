using System.CommandLine;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Common.Logging;
using K2RL.Gym;
using K2RL.Gym.Synthesis;
using K2RL.Trainer.Pretraining;
using K2RL.Trainer.Sft;
using Serilog;
using Spectre.Console;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl sft --job FILE --run-dir DIR [--resume] [--max-steps N] [--data PATH]</c>: supervised fine-tuning of a base
/// on chat records (loss on assistant tokens only). The job file, the base and every dataset line are checked before
/// any work. Results go to stdout (one JSON object), progress and logs to stderr. Ctrl-C and SIGTERM write a checkpoint
/// and exit.
/// </summary>
public sealed class SftCommand : ICommandProvider
{
    public string Group => "";

    internal sealed record SftOptions(string Job, string RunDir, bool Resume, long? MaxSteps, string? Data = null, string? InitFrom = null);

    public IEnumerable<Command> Build(CliContext context)
    {
        var job = new Option<string>("--job") { Description = "SFT job file (YAML), e.g. configs/jobs/sft-nano.yaml", Required = true };
        var runDir = new Option<string>("--run-dir") { Description = "Run directory (checkpoints, metrics.jsonl, logs)", Required = true };
        var resume = new Option<bool>("--resume") { Description = "Continue from the run directory's newest good checkpoint" };
        var maxSteps = new Option<long?>("--max-steps") { Description = "Stop (with a checkpoint) once this many steps are done" };
        var data = new Option<string?>("--data") { Description = "The dataset (.jsonl file or directory), instead of the job file's data.path" };
        var command = new Command("sft", "Supervised fine-tuning of a base on chat records (k2rl.sft.v1 JSONL), loss on assistant tokens only")
            { job, runDir, resume, maxSteps, data };
        command.SetAction(parse => Run(context, new SftOptions(parse.GetValue(job)!, parse.GetValue(runDir)!, parse.GetValue(resume),
            parse.GetValue(maxSteps), parse.GetValue(data))));
        yield return command;
    }

    internal static int Run(CliContext context, SftOptions options)
    {
        var (result, _) = RunJob(context, options, evaluateBase: false);
        context.Out.WriteLine(ResultJson(result).ToJsonString());
        return ExitCode(result);
    }

    internal static int ExitCode(SftResult result) => result.Reason switch
    {
        StopReason.Completed or StopReason.MaxSteps => 0,
        StopReason.Interrupted => 130,
        _ => 1,
    };

    internal static JsonObject ResultJson(SftResult r) => new()
    {
        ["reason"] = r.Reason.ToString().ToLowerInvariant(),
        ["step"] = r.Step,
        ["checkpoint"] = r.Checkpoint,
        ["loss"] = float.IsFinite(r.LastLoss) ? r.LastLoss : null,
        ["held_out"] = r.HeldOut is null ? null : new JsonObject(r.HeldOut.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
        ["data"] = r.Data is not { } d ? null : new JsonObject
        {
            ["records"] = d.Records,
            ["train"] = d.Train,
            ["held_out"] = d.HeldOut,
            ["truncated"] = d.Truncated,
            ["truncated_tokens"] = d.TruncatedTokens,
            ["dropped"] = d.Dropped,
            ["no_trained_tokens"] = d.NoTrainedTokens,
        },
    };

    /// <summary>
    /// Checks the job, the base and the dataset, then runs the job with signal handling and a progress display; with
    /// <paramref name="evaluateBase"/> (k2rl demo) first the base's held-out accuracy, measured once and kept in
    /// RUN_DIR/held_out_base.json for a resumed demo.
    /// </summary>
    internal static (SftResult Result, IReadOnlyDictionary<string, double>? Base) RunJob(CliContext context, SftOptions options, bool evaluateBase)
    {
        if (options.MaxSteps is <= 0)
        {
            throw new ConfigException($"--max-steps must be > 0, got {options.MaxSteps}");
        }

        var registry = GymRegistry.CreateDefault();
        var evalEnvs = registry.Environments.Where(e => e.HasVerifier).Select(e => e.Name).ToArray();
        var config = SftJobConfig.Load(options.Job, evalEnvs, options.InitFrom, options.Data);
        var records = SftDataset.Read(config.Data);   // every line checked: a bad one names file:line
        var run = new K2RL.Trainer.Checkpointing.RunDirectory(options.RunDir);
        run.Create();
        using var log = K2Log.Create(context.LogLevel, Path.Combine(run.Logs, "sft.clef"));
        var trainer = new SftTrainer(config, options.RunDir, records, registry, log);
        IReadOnlyDictionary<string, double>? before = null;
        if (evaluateBase)
        {
            string baseFile = Path.Combine(run.Root, "held_out_base.json");
            if (options.Resume && File.Exists(baseFile))
            {
                before = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, double>>(File.ReadAllText(baseFile));
            }
            else
            {
                log.Information("held-out evaluation of the base");
                before = trainer.Evaluate().Accuracy ?? new Dictionary<string, double>();
                K2RL.Model.IO.AtomicFile.WriteAllText(baseFile, System.Text.Json.JsonSerializer.Serialize(before));
            }
        }

        using var stop = new StopSignal(log, "stopping after this step and writing a checkpoint");

        SftResult result;
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(context.Error) });
        long last = Math.Min(trainer.TotalSteps, options.MaxSteps ?? trainer.TotalSteps);
        if (console.Profile.Capabilities.Interactive && !Console.IsErrorRedirected)
        {
            result = null!;
            console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("sft", maxValue: last);
                    result = trainer.Train(options.Resume, options.MaxSteps, stop.Token, new PretrainCommand.SpectreObserver(task));
                });
        }
        else
        {
            result = trainer.Train(options.Resume, options.MaxSteps, stop.Token, new PretrainCommand.LogObserver(log, options.MaxSteps, "SFT"));
        }

        if (evaluateBase && result.HeldOut is null && result.Reason is StopReason.Completed)
        {
            result = result with { HeldOut = trainer.Evaluate().Accuracy };   // a rerun demo resumed a finished run: no step evaluated
        }

        return (result, before);
    }
}
