using System.Text.Json;
using K2RL.Cli.Commands;
using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Gym.Remote;
using K2RL.Gym.Tasks;
using K2RL.Tests.Shared;

namespace K2RL.Cli.Tests;

public class GymCommandsTests
{
    private static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = await CliApp.RunAsync(args, new CliContext(output, error));
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public async Task ListJsonIsOneObjectWithEnvironmentsAndRubrics()
    {
        string rubrics = Path.Combine(ExternalTools.RepoRoot(), "configs", "rubrics");
        var (code, stdout, _) = await Run("gym", "list", "--json", "--rubrics", rubrics);
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(stdout);
        var envs = doc.RootElement.GetProperty("environments").EnumerateArray().ToList();
        Assert.Contains(envs, e => e.GetProperty("name").GetString() == "tool_use" && e.GetProperty("description").GetString()!.Length > 0);
        Assert.Equal(5, envs.Count);
        var rubricList = doc.RootElement.GetProperty("rubrics").EnumerateArray().ToList();
        Assert.Contains(rubricList, r => r.GetProperty("name").GetString() == "no_initial_praise" && r.GetProperty("mandatory").GetBoolean());
        Assert.Contains(rubricList, r => r.GetProperty("kind").GetString() == "core");
    }

    [Fact]
    public async Task ListTextNamesEveryEnvironment()
    {
        var (code, stdout, _) = await Run("gym", "list");
        Assert.Equal(0, code);
        foreach (string name in new[] { "arithmetic", "countdown", "list_ops", "tool_use", "code" })
        {
            Assert.Contains(name, stdout);
        }
    }

    [Fact]
    public async Task TryPlaysAnEpisodeFromAnActionFile()
    {
        var task = new ArithmeticGenerator().Generate(3, Split.Train, 1);
        string file = Path.GetTempFileName();
        File.WriteAllText(file, $"Answer: {task.Answer}\n");
        var (code, stdout, _) = await Run("gym", "try", "arithmetic", "--seed", "3", "--input", file);
        Assert.Equal(0, code);
        Assert.Contains($"[user] {task.Prompt}", stdout);
        Assert.Contains("# reward 1", stdout);
        Assert.Contains("terminated after 1 turns; return 1, correct: true", stdout);
    }

    [Fact]
    public async Task TryReadsMultiLineAndToolActionsFromAReader()
    {
        var task = new ToolUseGenerator().Generate(2, Split.Train, 1);
        string key = ToolUseGenerator.Table(task).Keys.First();
        string call = ChatFormat.FormatToolCall("lookup", 0, new Dictionary<string, string> { ["key"] = key });
        string script = $"garbage <|tool_calls_section_begin|>\n\"\"\"\nFirst a lookup.\n{call}\n\"\"\"\nAnswer: {task.Answer}\n";
        var output = new StringWriter();
        int code = await GymCommands.Try(new CliContext(output, new StringWriter()),
            new GymCommands.TryOptions("tool_use", 2, 1, false, null, null), new StringReader(script));
        string text = output.ToString();
        Assert.Equal(0, code);
        Assert.Contains("[tool available] lookup", text);
        Assert.Contains("error: malformed tool call", text);
        Assert.Contains($"[tool functions.lookup:0] {ToolUseGenerator.Table(task)[key]}", text);
        Assert.Contains("terminated after 3 turns", text);
        Assert.Contains("correct: true", text);
    }

    [Fact]
    public async Task TryUnknownEnvironmentIsAOneLineError()
    {
        var (code, _, stderr) = await Run("gym", "try", "chess");
        Assert.Equal(1, code);
        Assert.Contains("unknown environment 'chess'", stderr);
    }

    [Fact]
    public async Task ServeHostsTheEnvironmentsForARemoteClient()
    {
        var output = new StringWriter();
        using var stop = new CancellationTokenSource();
        var serving = GymCommands.Serve(new CliContext(output, new StringWriter()), new GymCommands.ServeOptions("127.0.0.1", 0, null, true), stop.Token);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!output.ToString().Contains("address") && DateTime.UtcNow < deadline && !serving.IsCompleted)
        {
            await Task.Delay(50);
        }

        using var doc = JsonDocument.Parse(output.ToString());
        var address = new Uri(doc.RootElement.GetProperty("address").GetString()!);
        await using (var remote = new RemoteEnvironment(address, "arithmetic"))
        {
            await remote.ResetAsync(3);
            var task = new ArithmeticGenerator().Generate(3, Split.Train, 1);
            var step = await remote.StepAsync($"Answer: {task.Answer}");
            Assert.True(step.Info.Correct);
        }

        stop.Cancel();
        Assert.Equal(0, await serving);
    }

    [Fact]
    public async Task EvalIsNotRegisteredUntilAModelCanGenerate()
    {
        var (code, _, _) = await Run("gym", "eval", "arithmetic", "--checkpoint", "x");
        Assert.NotEqual(0, code);
    }
}
