using System.CommandLine;

namespace K2RL.Cli;

/// <summary>
/// A piece of the CLI. Each subsystem adds its commands in its own file under Commands/ by implementing this
/// interface; <see cref="CliApp"/> finds every provider in this assembly, so adding a command touches one file.
/// </summary>
public interface ICommandProvider
{
    /// <summary>The group the commands go under ("" for the root, or "bench", "model", "tokenizer", "gym").</summary>
    string Group { get; }

    IEnumerable<Command> Build(CliContext context);
}
