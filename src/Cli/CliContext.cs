namespace K2RL.Cli;

/// <summary>Where a command writes: stdout for results (one JSON object with --json), stderr for progress and logs.</summary>
public sealed record CliContext(TextWriter Out, TextWriter Error)
{
    /// <summary>The level run logs are written at (<see cref="K2RL.Common.Logging.K2Log.Level"/>: --verbose, K2RL_LOG_LEVEL).</summary>
    public Serilog.Events.LogEventLevel LogLevel { get; init; } = Serilog.Events.LogEventLevel.Information;

    public static CliContext Console => new(System.Console.Out, System.Console.Error);

    /// <summary>What every --checkpoint option accepts (<see cref="K2RL.Model.IO.CheckpointPath"/>).</summary>
    public const string CheckpointHelp =
        "A checkpoint directory (config.json, model.safetensors, tokenizer) or a run directory (its newest good checkpoint, via LATEST)";

    /// <summary>A warning on stderr (stdout stays clean for --json).</summary>
    public void Warn(string text) => Error.WriteLine("warning: " + text);
}
