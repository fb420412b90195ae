using System.Text.Json.Nodes;
using K2RL.Common.Chat;
using K2RL.Gym.Eval;
using K2RL.Gym.Synthesis;
using K2RL.Gym.Tasks;

namespace K2RL.Gym.Tests;

/// <summary>
/// The synthetic agentic part: tool catalog, simulated user, injected failures the expert recovers from, the rubric
/// judge, and the bad inputs (invalid schema, a throwing simulator, chat-format violations, a diverging environment).
/// </summary>
public sealed class SynthAgenticTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "k2rl-synthag-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(dir))
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static SynthJob Agentic(int n, double share) =>
        SynthPipelineTests.Job(n, ("agentic", 1)) with { Agentic = new AgenticOptions { FailureShare = share } };

    [Fact]
    public async Task EveryInjectedFailureInAKeptTrajectoryIsFollowedByARetry()
    {
        var summary = await SynthesisPipeline.RunAsync(Agentic(150, 1.0), dir);
        Assert.Equal(150, summary.Kept + summary.Duplicates);
        Assert.Equal(summary.Kept, summary.KeptWithFailure);
        Assert.Equal(summary.Kept, summary.Recoveries);
        Assert.Equal(InjectedFailure.Kinds.Order(), summary.InjectedFailuresKept.Keys);
        foreach (var record in SftDataset.Read(Path.Combine(dir, SynthesisPipeline.TrainFile)))
        {
            var rubric = JsonNode.Parse(record.RubricJson!)!;
            int call = rubric["injected_failure"]!["call"]!.GetValue<int>();
            var calls = record.Messages.Where(m => m.ToolCalls is not null).SelectMany(m => m.ToolCalls!).ToList();
            var failed = calls[call];
            var after = record.Messages.SkipWhile(m => m.ToolCalls?.Contains(failed) != true).Skip(1).First(m => m.Role == Role.Assistant);
            Assert.Contains(after.ToolCalls!, c => c.Name == failed.Name && c.ArgumentsJson == failed.ArgumentsJson);
            Assert.StartsWith("rubric met:", record.Verdict!.Reason);
            Assert.Contains("1 injected failure(s) recovered", record.Verdict.Reason);
        }

        var none = await SynthesisPipeline.RunAsync(Agentic(60, 0), Path.Combine(dir, "none"));
        Assert.Empty(none.InjectedFailures);
        Assert.Equal(0, none.KeptWithFailure);
    }

    [Fact]
    public async Task ConfiguredShareOfKeptTrajectoriesCarriesAFailure()
    {
        var summary = await SynthesisPipeline.RunAsync(Agentic(600, 0.3), dir);
        double share = (double)summary.KeptWithFailure / summary.KeptAgentic;
        Assert.InRange(share, 0.22, 0.38);
        Assert.Equal(summary.KeptWithFailure, summary.Recoveries);
        Assert.Equal(0, summary.Rejected);
        Assert.True(summary.ByEnv["agentic"].KeptByDifficulty.Keys.SequenceEqual([1, 2, 3]));
    }

    /// <summary>Runs one agentic episode with the expert, except where <paramref name="replace"/> returns another action.</summary>
    private static async Task<(StepResult Last, AgenticEnvironment Env)> Play(long seed, int difficulty, Func<int, string, string?> replace)
    {
        var options = new AgenticOptions { FailureShare = 1 };
        var env = new AgenticEnvironment(AgenticCatalog.Default(), options);
        var obs = await env.ResetAsync(seed, new ResetOptions { Difficulty = difficulty });
        var conversation = obs.Messages.ToList();
        for (int turn = 0; ; turn++)
        {
            string expert = AgenticExpert.Act(env.Task!, conversation);
            string action = replace(turn, expert) ?? expert;
            conversation.Add(Message.AssistantText(action));
            var step = await env.StepAsync(action);
            if (step.Done)
            {
                return (step, env);
            }

            conversation.AddRange(step.Observation.Messages);
        }
    }

    [Fact]
    public async Task RubricJudgeRejectsATrajectoryThatIgnoresAFailureOrAnswersWrong()
    {
        var (ok, _) = await Play(5, 2, (_, _) => null);
        Assert.True(ok.Info.Correct, ok.Info.Data.GetValueOrDefault("reason"));

        // After the first call (which fails: share 1, and the only read call of a d1 task is call 0) the policy answers.
        var (ignored, env) = await Play(5, 1, (turn, _) => turn == 1 ? "It is probably 3.\nAnswer: 3" : null);
        Assert.False(ignored.Info.Correct);
        Assert.Contains("is not followed by a retry of the same call", ignored.Info.Data["reason"]);
        Assert.Single(env.Injections);

        var (wrong, _) = await Play(5, 1, (_, expert) => expert.Contains("Answer:") ? "Answer: 1234567" : null);
        Assert.False(wrong.Info.Correct);
        Assert.Contains("answer 1 is '1234567'", wrong.Info.Data["reason"]);

        var (lazy, _) = await Play(6, 2, (turn, _) => turn == 0 ? "Answer: 7" : null);
        Assert.False(lazy.Info.Correct);
        Assert.Contains("was never called", lazy.Info.Data["reason"]);
    }

    [Fact]
    public async Task SimulatedUserNudgesAnAnswerWithoutAnAnswerLineAndAsksTheNextRequest()
    {
        var env = new AgenticEnvironment(AgenticCatalog.Default(), new AgenticOptions { FailureShare = 0 });
        var obs = await env.ResetAsync(2, new ResetOptions { Difficulty = 3 });
        Assert.Equal(2, env.Task!.Requests.Count);
        var step = await env.StepAsync("I am not sure.");
        Assert.False(step.Done);
        Assert.Contains("Answer:", Assert.Single(step.Observation.Messages).Content);
        Assert.Equal(Role.User, step.Observation.Messages[0].Role);

        // Played by the expert the episode sees both requests from the simulated user, and the snapshot replays it.
        var conversation = obs.Messages.ToList();
        conversation.Add(Message.AssistantText("I am not sure."));
        conversation.AddRange(step.Observation.Messages);
        while (!step.Done)
        {
            string action = AgenticExpert.Act(env.Task, conversation);
            conversation.Add(Message.AssistantText(action));
            step = await env.StepAsync(action);
            conversation.AddRange(step.Done ? [] : step.Observation.Messages);
            if (!step.Done && env.Transcript.Count(m => m.Role == Role.User) == 3)
            {
                var copy = new AgenticEnvironment(AgenticCatalog.Default(), new AgenticOptions { FailureShare = 0 });
                await copy.RestoreAsync(await env.SnapshotAsync());
                Assert.Equal(env.Transcript.Select(m => (m.Role, m.Content)), copy.Transcript.Select(m => (m.Role, m.Content)));
            }
        }

        Assert.True(step.Info.Correct, step.Info.Data.GetValueOrDefault("reason"));
        Assert.Equal(env.Task.Requests.Select(r => r.Text), env.Transcript.Where(m => m.Role == Role.User).Select(m => m.Content).Where(c => !c.Contains("Answer:")));
    }

    [Fact]
    public async Task AnInvalidToolSchemaRejectsItsTrajectoriesWithTheReasonCounted()
    {
        var catalog = Catalog(get => get with { Spec = get.Spec with { ParametersSchemaJson = """{"type":"object","properties":{"name":{"type":"strng"}}}""" } });
        var summary = await SynthesisPipeline.RunAsync(Agentic(20, 0.3), dir, new SynthRunOptions { Catalog = catalog });
        Assert.Equal(20, summary.RejectedByReason["invalid_tool_schema"]);
        var rejected = File.ReadAllLines(Path.Combine(dir, SynthesisPipeline.RejectedFile));
        Assert.Equal(20, rejected.Length);
        Assert.Contains("tool 'get_book': property 'name' needs a \"type\"", Reason(rejected[0]));

        var notJson = Catalog(get => get with { Spec = get.Spec with { ParametersSchemaJson = "{not json" } });
        var again = await SynthesisPipeline.RunAsync(Agentic(5, 0), Path.Combine(dir, "b"), new SynthRunOptions { Catalog = notJson });
        Assert.Equal(5, again.RejectedByReason["invalid_tool_schema"]);
        Assert.All(File.ReadAllLines(Path.Combine(dir, "b", SynthesisPipeline.RejectedFile)), l => JsonNode.Parse(l));   // still JSON lines
    }

    [Fact]
    public async Task ASimulatorThatThrowsRejectsTheTrajectoryNotThePipeline()
    {
        var catalog = Catalog(get => get with { Simulate = (_, _) => throw new InvalidOperationException("backend exploded") });
        var summary = await SynthesisPipeline.RunAsync(Agentic(12, 0), dir, new SynthRunOptions { Catalog = catalog });
        Assert.Equal(12, summary.RejectedByReason["simulator_threw"]);
        var line = File.ReadAllLines(Path.Combine(dir, SynthesisPipeline.RejectedFile))[0];
        Assert.Equal("simulator of tool 'get_book' threw InvalidOperationException: backend exploded", Reason(line));
    }

    private static string Reason(string line) => JsonNode.Parse(line)!["verdict"]!["reason"]!.GetValue<string>();

    /// <summary>The bookstore domain alone, its get tool changed.</summary>
    private static AgenticCatalog Catalog(Func<SimTool, SimTool> change)
    {
        var book = AgenticCatalog.Default().Domains.First(d => d.Name == "bookstore");
        return new AgenticCatalog([book with { Tools = book.Tools.Select(t => t.Role == SimToolRole.Get ? change(t) : t).ToList() }]);
    }

    [Fact]
    public async Task AChatFormatViolationIsRejectedWithItsReason()
    {
        var model = new SynthGeneratorSpec { Kind = SynthGeneratorSpec.Checkpoint, Path = "scripted" };
        var job = SynthPipelineTests.Job(6, ("arithmetic", 1)) with { Generator = model };
        var policy = new ScriptedPolicy(r => ChatTokens.ImEnd + "Answer: 3");
        var summary = await SynthesisPipeline.RunAsync(job, dir, new SynthRunOptions
        {
            ModelSources = new Dictionary<SynthGeneratorSpec, SynthModelSource> { [model] = new(policy, "checkpoint:scripted") },
        });
        Assert.Equal(6, summary.RejectedByReason["chat_format"]);
        Assert.Contains("content holds the chat special token <|im_end|>", Reason(File.ReadAllLines(Path.Combine(dir, SynthesisPipeline.RejectedFile))[0]));

        var record = new SftRecord
        {
            Id = "x",
            Messages = [Message.UserText("q"), Message.AssistantText("a"), Message.ToolResult("functions.lookup:0", "1"), Message.AssistantText("b")],
        };
        Assert.Contains("tool result for 'functions.lookup:0', which no earlier assistant message called", SynthChecks.ChatFormatProblem(record));
    }

    [Fact]
    public async Task AnEnvironmentThatDivergesFromTheExpertTranscriptIsRejected()
    {
        // A tool_use whose lookup answers a price one cent off the task's table.
        var registry = new GymRegistry();
        var generator = new ToolUseGenerator();
        registry.AddEnvironment(new EnvironmentEntry("tool_use", "tampered",
            _ => new ToolTaskEnvironment("tool_use", generator, new GuardedVerifier(new NumericVerifier()), task =>
                [BuiltinTools.Calculator(), BuiltinTools.Lookup(ToolUseGenerator.Table(task).ToDictionary(kv => kv.Key, kv => (decimal.Parse(kv.Value, System.Globalization.CultureInfo.InvariantCulture) + 0.01m).ToString(System.Globalization.CultureInfo.InvariantCulture)))]),
            generator, [BuiltinTools.CalculatorSpec, BuiltinTools.LookupSpec]));
        var summary = await SynthesisPipeline.RunAsync(SynthPipelineTests.Job(8, ("tool_use", 1)), dir, new SynthRunOptions { Registry = registry });
        Assert.Equal(8, summary.RejectedByReason["diverged"]);
        Assert.Contains("message 3 (Tool): the environment gave", Reason(File.ReadAllLines(Path.Combine(dir, SynthesisPipeline.RejectedFile))[0]));
    }

    [Theory]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string"}},"required":["b"]}""", "required entry \"b\" is not a declared property")]
    [InlineData("""{"type":"array"}""", "must be a JSON schema of \"type\": \"object\"")]
    [InlineData("""{"type":"object","properties":[]}""", "\"properties\" must be an object")]
    [InlineData("""[1,""", "parameters are not JSON")]
    public void ToolSchemaNamesWhatIsWrong(string schema, string expected)
    {
        Assert.Contains(expected, ToolSchema.Problem(new ToolSpec("t", "", schema)));
        Assert.Contains("is not letters", ToolSchema.Problem(new ToolSpec("bad name", "", "{}")));
        Assert.Null(ToolSchema.Problem(BuiltinTools.CalculatorSpec));
        Assert.All(AgenticCatalog.Default().Domains.SelectMany(d => d.Tools), t => Assert.Null(ToolSchema.Problem(t.Spec)));
    }

    [Fact]
    public void TasksAreDeterministicAndDrawEveryCategory()
    {
        var catalog = AgenticCatalog.Default();
        var a = AgenticTasks.Create(catalog, 42, 3, new AgenticOptions());
        var b = AgenticTasks.Create(catalog, 42, 3, new AgenticOptions());
        Assert.Equal(a.Id, b.Id);
        Assert.Equal(a.RubricJson(), b.RubricJson());
        var categories = Enumerable.Range(0, 200).Select(s => AgenticTasks.Create(catalog, s, 1, new AgenticOptions()).Domain.Category).Distinct();
        Assert.Equal(catalog.Categories.Order(), categories.Order());
        Assert.Throws<K2RL.Common.ConfigException>(() => catalog.Only(["cooking"]));
    }
}
