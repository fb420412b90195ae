using System.CommandLine;
using System.Text;
using System.Text.Json;
using K2RL.Common;
using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Critic;
using K2RL.Gym.Remote;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl gym list|try|serve</c>; <c>gym eval</c> is <see cref="GymEvalCommand"/> (it needs the rollout engine).
/// </summary>
public sealed class GymCommands : ICommandProvider
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public string Group => "gym";

    public IEnumerable<Command> Build(CliContext context)
    {
        yield return ListCommand(context);
        yield return TryCommand(context);
        yield return ServeCommand(context);
    }

    internal sealed record ServeOptions(string Host, int Port, string? Config, bool Json);

    internal sealed record ListOptions(string? Config, string? Rubrics, bool Json);

    internal sealed record TryOptions(string Env, long Seed, int Difficulty, bool HeldOut, string? Input, string? Config);

    private static Option<string?> ConfigOption() =>
        new("--config") { Description = "A job config whose 'gym:' section names plugins and a rubric directory" };

    private static Command ListCommand(CliContext context)
    {
        var config = ConfigOption();
        var rubrics = new Option<string?>("--rubrics") { Description = "Rubric directory (default: configs/rubrics when present)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var command = new Command("list", "List environments and rubrics") { config, rubrics, json };
        command.SetAction(parse => List(context, new ListOptions(parse.GetValue(config), parse.GetValue(rubrics), parse.GetValue(json))));
        return command;
    }

    private static Command TryCommand(CliContext context)
    {
        var env = new Argument<string>("env") { Description = "Environment name (see 'k2rl gym list')" };
        var seed = new Option<long>("--seed") { Description = "Task seed", DefaultValueFactory = _ => 0 };
        var difficulty = new Option<int>("--difficulty") { Description = "Difficulty level (1 = easiest)", DefaultValueFactory = _ => 1 };
        var heldOut = new Option<bool>("--held-out") { Description = "Draw from the held-out split" };
        var input = new Option<string?>("--input") { Description = "Read actions from this file instead of stdin" };
        var config = ConfigOption();
        var command = new Command("try", "Play an episode in the terminal: each line is an action; \"\"\" on its own line starts and ends a multi-line action")
        {
            env, seed, difficulty, heldOut, input, config,
        };
        command.SetAction(async (parse, ct) =>
        {
            var options = new TryOptions(parse.GetValue(env)!, parse.GetValue(seed), parse.GetValue(difficulty),
                parse.GetValue(heldOut), parse.GetValue(input), parse.GetValue(config));
            if (options.Input is null)
            {
                return await Try(context, options, Console.In, ct);
            }

            if (!File.Exists(options.Input))
            {
                throw new K2Exception($"{options.Input}: no such file");
            }

            using var reader = new StreamReader(options.Input, Encoding.UTF8);
            return await Try(context, options, reader, ct);
        });
        return command;
    }

    private static Command ServeCommand(CliContext context)
    {
        var host = new Option<string>("--host") { Description = "Address to bind (\"*\" for all interfaces)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port (0 picks a free one)", DefaultValueFactory = _ => 0 };
        var config = ConfigOption();
        var json = new Option<bool>("--json") { Description = "Print the address as one JSON object" };
        var command = new Command("serve", "Serve every registered environment over k2rl.v1.Gym (gRPC) until Ctrl-C") { host, port, config, json };
        command.SetAction((parse, ct) => Serve(context,
            new ServeOptions(parse.GetValue(host)!, parse.GetValue(port), parse.GetValue(config), parse.GetValue(json)), ct));
        return command;
    }

    internal static async Task<int> Serve(CliContext context, ServeOptions options, CancellationToken ct)
    {
        var registry = Registry(options.Config, null);
        await using var server = await RemoteEnvironmentServer.StartAsync(registry,
            new K2RL.Common.Rpc.GrpcServerOptions { Host = options.Host, Port = options.Port }, ct: ct);
        context.Out.WriteLine(options.Json
            ? JsonSerializer.Serialize(new { Address = server.Address.ToString(), Environments = registry.Environments.Select(e => e.Name) }, Json)
            : $"serving {string.Join(", ", registry.Environments.Select(e => e.Name))} at {server.Address}");
        context.Out.Flush();
        try
        {
            await Task.Delay(Timeout.Infinite, ct);
        }
        catch (OperationCanceledException)
        {
            context.Error.WriteLine("stopping");
        }

        return 0;
    }

    internal static GymRegistry Registry(string? config, string? rubrics)
    {
        var registry = GymRegistry.CreateDefault();
        var gym = config is null ? new GymConfig() : GymConfig.Load(config);
        gym.ApplyTo(registry);
        string? dir = rubrics ?? (gym.RubricsDirectory is null && Directory.Exists("configs/rubrics") ? "configs/rubrics" : null);
        if (dir is not null)
        {
            registry.LoadRubrics(dir);
        }

        return registry;
    }

    internal static int List(CliContext context, ListOptions options)
    {
        var registry = Registry(options.Config, options.Rubrics);
        if (options.Json)
        {
            context.Out.WriteLine(JsonSerializer.Serialize(new
            {
                Environments = registry.Environments.Select(e => new { e.Name, e.Description }),
                Rubrics = registry.Rubrics.Select(r => new
                {
                    r.Name,
                    Kind = JsonNamingPolicy.SnakeCaseLower.ConvertName(r.Kind.ToString()),
                    r.Mandatory,
                    r.Description,
                }),
            }, Json));
            return 0;
        }

        context.Out.WriteLine("Environments:");
        int width = registry.Environments.Select(e => e.Name.Length).DefaultIfEmpty(0).Max();
        foreach (var e in registry.Environments)
        {
            context.Out.WriteLine($"  {e.Name.PadRight(width)}  {e.Description}");
        }

        context.Out.WriteLine("Rubrics:");
        foreach (var r in registry.Rubrics)
        {
            context.Out.WriteLine($"  {r.Name} ({JsonNamingPolicy.SnakeCaseLower.ConvertName(r.Kind.ToString())}{(r.Mandatory ? ", mandatory" : "")})");
        }

        return 0;
    }

    internal static async Task<int> Try(CliContext context, TryOptions options, TextReader input, CancellationToken ct = default)
    {
        var registry = Registry(options.Config, null);
        await using var env = registry.CreateEnvironment(options.Env);
        var obs = await env.ResetAsync(options.Seed,
            new ResetOptions { Difficulty = options.Difficulty, Split = options.HeldOut ? Split.HeldOut : Split.Train }, ct);
        context.Out.WriteLine($"# {options.Env}, seed {options.Seed}, difficulty {options.Difficulty}{(options.HeldOut ? ", held-out" : "")}");
        foreach (var tool in obs.Tools)
        {
            context.Out.WriteLine($"[tool available] {tool.Name}: {tool.Description} {tool.ParametersSchemaJson}");
        }

        Print(context, obs.Messages);
        double total = 0;
        bool? correct = null;
        int turns = 0;
        while (true)
        {
            context.Error.Write("> ");
            string? action = await ReadActionAsync(input, ct);
            if (action is null)
            {
                context.Out.WriteLine($"# input ended after {turns} turns; return {total:0.###}");
                return 0;
            }

            var step = await env.StepAsync(action, ct);
            turns++;
            total += step.Reward;
            correct = step.Info.Correct ?? correct;
            Print(context, step.Observation.Messages);
            context.Out.WriteLine($"# reward {step.Reward:0.###}{(step.Info.Error is { } e ? $", error: {e}" : "")}");
            if (step.Done)
            {
                string how = step.Terminated ? "terminated" : "truncated";
                context.Out.WriteLine($"# episode {how} after {turns} turns; return {total:0.###}, correct: {(correct?.ToString().ToLowerInvariant() ?? "n/a")}");
                return 0;
            }
        }
    }

    /// <summary>One line is one action; a line of three double quotes starts a multi-line action ended by another.</summary>
    internal static async Task<string?> ReadActionAsync(TextReader input, CancellationToken ct)
    {
        string? line = await input.ReadLineAsync(ct);
        if (line is null || line.Trim() != "\"\"\"")
        {
            return line;
        }

        var sb = new StringBuilder();
        while (await input.ReadLineAsync(ct) is { } next && next.Trim() != "\"\"\"")
        {
            sb.Append(next).Append('\n');
        }

        return sb.ToString();
    }

    private static void Print(CliContext context, IEnumerable<Message> messages)
    {
        foreach (var m in messages)
        {
            string who = m.Role switch
            {
                Role.Tool => $"tool {m.ToolCallId}",
                _ => m.Role.ToString().ToLowerInvariant(),
            };
            context.Out.WriteLine($"[{who}] {m.Content}");
        }
    }
}
