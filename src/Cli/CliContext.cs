namespace K2RL.Cli;

/// <summary>Where a command writes: stdout for results (one JSON object with --json), stderr for progress and logs.</summary>
public sealed record CliContext(TextWriter Out, TextWriter Error)
{
    public static CliContext Console => new(System.Console.Out, System.Console.Error);
}
