using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Json;

namespace K2RL.Common.Logging;

/// <summary>
/// Serilog setup: human-readable lines on stderr (stdout stays clean for --json), and optionally a JSON
/// file per run (runs/NAME/logs/). One place, so every command logs alike.
/// </summary>
public static class K2Log
{
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
            config = config.WriteTo.File(new JsonFormatter(renderMessage: true), jsonFile);
        }

        return config.CreateLogger();
    }
}
