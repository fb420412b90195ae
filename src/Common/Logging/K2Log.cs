using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace K2RL.Common.Logging;

/// <summary>
/// Serilog setup, one place for every command: human-readable lines on stderr (stdout stays clean for --json) and,
/// for a run, Serilog's compact JSON (CLEF: one object per line with <c>@t</c>, <c>@l</c>, <c>@mt</c>, <c>@m</c> and
/// the properties) in <c>RUN_DIR/logs/</c>, readable by any CLEF tool (Seq, <c>clef-tool</c>, jq). The level is
/// Information, Debug with <c>--verbose</c>, or whatever <c>K2RL_LOG_LEVEL</c> names.
/// </summary>
public static class K2Log
{
    /// <summary>Environment variable naming the minimum level (Verbose, Debug, Information, Warning, Error, Fatal).</summary>
    public const string LevelVariable = "K2RL_LOG_LEVEL";

    public static Logger Create(LogEventLevel level = LogEventLevel.Information, string? jsonFile = null)
    {
        var config = new LoggerConfiguration()
            .MinimumLevel.Is(level)
            .Enrich.FromLogContext()
            .WriteTo.Console(
                outputTemplate: "[{Timestamp:HH:mm:ss} {Level:u3}] {Message:lj}{NewLine}{Exception}",
                standardErrorFromLevel: LogEventLevel.Verbose);
        if (jsonFile is not null)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(jsonFile))!);
            config = config.WriteTo.File(new RenderedCompactJsonFormatter(), jsonFile);
        }

        return config.CreateLogger();
    }

    /// <summary>
    /// The level a command logs at: <paramref name="verbose"/> (the <c>--verbose</c> flag) gives Debug; otherwise
    /// <paramref name="variable"/> (the value of <see cref="LevelVariable"/>) when set, else Information.
    /// </summary>
    public static LogEventLevel Level(bool verbose, string? variable)
    {
        if (verbose)
        {
            return LogEventLevel.Debug;
        }

        if (string.IsNullOrWhiteSpace(variable))
        {
            return LogEventLevel.Information;
        }

        return Enum.TryParse(variable.Trim(), ignoreCase: true, out LogEventLevel level) && Enum.IsDefined(level)
            ? level
            : throw new ConfigException($"{LevelVariable}: '{variable}' is not a level (one of {string.Join(", ", Enum.GetNames<LogEventLevel>())})");
    }
}
