using System.CommandLine;
using K2RL.Common;
using K2RL.Common.Logging;

namespace K2RL.Cli;

/// <summary>Builds the `k2rl` command tree and runs it.</summary>
public static class CliApp
{
    private static readonly Dictionary<string, string> GroupDescriptions = new()
    {
        ["bench"] = "Benchmarks: kernels, training, decoding, RPC, the Gym, the RL iteration (and its workers), weight broadcast",
        ["model"] = "Model configs, parameter accounting, checkpoints and logits",
        ["tokenizer"] = "Train, encode and decode with the byte-level BPE tokenizer",
        ["gym"] = "Environments: list, play and evaluate; check rubrics and judge responses against them",
        ["ckpt"] = "Checkpoint engine: plan a weight update (bucket size, pipeline, time)",
        ["job"] = "Job control of a running RL job: status, pause, drain, resume, stop",
    };

    /// <summary>Every command's log level to Debug (the run logs on stderr and in RUN_DIR/logs/).</summary>
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Log at Debug level (default Information, or K2RL_LOG_LEVEL)", Recursive = true };

    public static RootCommand BuildRoot(CliContext context)
    {
        var root = new RootCommand("k2rl: pretrain and RL-post-train Kimi-K2-style MoE models on CPU") { Verbose };
        var groups = new Dictionary<string, Command>();
        var providers = typeof(CliApp).Assembly.GetTypes()
            .Where(t => typeof(ICommandProvider).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false })
            .OrderBy(t => t.FullName, StringComparer.Ordinal)
            .Select(t => (ICommandProvider)Activator.CreateInstance(t)!);
        foreach (var provider in providers)
        {
            Command parent = root;
            if (provider.Group.Length > 0)
            {
                if (!groups.TryGetValue(provider.Group, out var group))
                {
                    group = new Command(provider.Group, GroupDescriptions.GetValueOrDefault(provider.Group, provider.Group));
                    groups[provider.Group] = group;
                    root.Subcommands.Add(group);
                }

                parent = group;
            }

            foreach (var command in provider.Build(context))
            {
                parent.Subcommands.Add(command);
            }
        }

        return root;
    }

    /// <summary>Parses and runs; a <see cref="K2Exception"/> becomes one line on stderr and exit code 1.</summary>
    public static async Task<int> RunAsync(string[] args, CliContext context)
    {
        // The level is known before the commands are built, so every command's context carries it.
        try
        {
            context = context with { LogLevel = K2Log.Level(args.Contains("--verbose"), Environment.GetEnvironmentVariable(K2Log.LevelVariable)) };
        }
        catch (K2Exception e)
        {
            await context.Error.WriteLineAsync($"error: {e.Message}");
            return 2;
        }

        var root = BuildRoot(context);
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            // Usage errors go to stderr only: stdout stays clean for callers that read --json.
            foreach (var error in parse.Errors)
            {
                await context.Error.WriteLineAsync($"error: {error.Message}");
            }

            await context.Error.WriteLineAsync("Run 'k2rl --help' (or the command with --help) for usage.");
            return 2;
        }

        try
        {
            return await parse.InvokeAsync(new InvocationConfiguration
            {
                Output = context.Out,
                Error = context.Error,
                EnableDefaultExceptionHandler = false,
            });
        }
        catch (K2Exception e)
        {
            await context.Error.WriteLineAsync($"error: {e.Message}");
            return 1;
        }
        catch (OperationCanceledException)
        {
            await context.Error.WriteLineAsync("cancelled");
            return 130;
        }
    }
}
