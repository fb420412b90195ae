using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common.Chat;

namespace K2RL.Gym.Synthesis;

/// <summary>A failure the simulator injected: which call, of which tool with which arguments, and how it failed.</summary>
public sealed record Injection(string CallId, string Tool, string ArgumentsJson, string Kind);

/// <summary>
/// The environment of a synthetic agentic task (<see cref="AgenticTasks"/>): the agent's tools answer from a stateful
/// simulator over the episode's table (the calculator is the Gym's real one), one planned call fails as the task says
/// (timeout, error or a result with a field of the wrong type), and a simulated user makes the task's requests one
/// after another: an answer with an <c>Answer:</c> line moves to the next request, one without gets a nudge. After the
/// last answer the <see cref="RubricJudge"/> scores the whole transcript (reward 1 when the rubric is met).
/// <para>Bad calls (unknown tool, arguments that do not fit the schema) are answered with an error and penalized, as in
/// <see cref="ToolTaskEnvironment"/>. A simulator that throws fails the episode (<see cref="StepInfo.Failure"/>, data
/// <c>code = simulator_threw</c>).</para>
/// </summary>
public sealed class AgenticEnvironment : EnvironmentBase
{
    public const string EnvName = "agentic";

    private readonly AgenticCatalog catalog;
    private readonly AgenticOptions options;
    private readonly ITool calculator = BuiltinTools.Calculator();
    private readonly List<Message> transcript = [];
    private readonly List<Injection> injections = [];
    private readonly List<string> actions = [];
    private SimTable table = new([]);
    private int calls;
    private int request;

    public AgenticEnvironment(AgenticCatalog catalog, AgenticOptions? options = null, EnvironmentLimits? limits = null)
        : base(EnvName, limits ?? new EnvironmentLimits { MaxTurns = 12 })
    {
        this.catalog = catalog;
        this.options = options ?? new AgenticOptions();
    }

    public AgenticTask? Task { get; private set; }

    /// <summary>The episode so far as chat messages (assistant tool calls parsed), as the rubric judge reads it.</summary>
    public IReadOnlyList<Message> Transcript => transcript;

    public IReadOnlyList<Injection> Injections => injections;

    public SimTable State => table;

    protected override ValueTask<Observation> OnResetAsync(CancellationToken ct)
    {
        Start();
        return ValueTask.FromResult(new Observation(transcript.ToList(), Task!.ToolSpecs));
    }

    protected override ValueTask<StepResult> OnStepAsync(string action, CancellationToken ct) => ValueTask.FromResult(Apply(action));

    private void Start()
    {
        Task = AgenticTasks.Create(catalog, Seed, Options.Difficulty, options);
        table = Task.Initial.Clone();
        transcript.Clear();
        injections.Clear();
        actions.Clear();
        calls = 0;
        request = 0;
        transcript.Add(Message.SystemText(Task.SystemPrompt));
        transcript.Add(Message.UserText(Task.Requests[0].Text));
    }

    private StepResult Apply(string action)
    {
        actions.Add(action);
        if (!ChatFormat.TryParseToolCalls(action, out string content, out var parsed, out string? error))
        {
            transcript.Add(Message.AssistantText(action));
            var invalid = Invalid("malformed tool call: " + error);
            transcript.AddRange(invalid.Observation.Messages);
            return invalid;
        }

        if (parsed.Count == 0)
        {
            transcript.Add(Message.AssistantText(content));
            return Answer(content);
        }

        transcript.Add(new Message(Role.Assistant, content, ToolCalls: parsed));
        var results = new List<Message>(parsed.Count);
        var errors = new List<string>();
        foreach (var call in parsed)
        {
            var (result, isError, threw) = Invoke(call);
            if (threw is not null)
            {
                return new StepResult(Observation.Empty, 0, false, true, new StepInfo
                {
                    Correct = false,
                    Failure = threw,
                    Data = new Dictionary<string, string> { ["code"] = "simulator_threw" },
                });
            }

            if (isError)
            {
                errors.Add($"{call.Id}: {result}");
            }

            results.Add(Message.ToolResult(call.Id, result));
        }

        transcript.AddRange(results);
        return new StepResult(new Observation(results, []), -Limits.InvalidActionPenalty * errors.Count, false, false,
            errors.Count == 0 ? StepInfo.None : new StepInfo { Error = string.Join("; ", errors) });
    }

    /// <summary>An answer: the next request, a nudge when it has no answer line, or the judged end.</summary>
    private StepResult Answer(string content)
    {
        if (!AnswerExtractor.TryExtract(content, out _))
        {
            var nudge = Message.UserText("Please end your reply with a line 'Answer: <answer>'.");
            transcript.Add(nudge);
            return new StepResult(Observation.Of(nudge), 0, false, false, StepInfo.None);
        }

        request++;
        if (request < Task!.Requests.Count)
        {
            var next = Message.UserText(Task.Requests[request].Text);
            transcript.Add(next);
            return new StepResult(Observation.Of(next), 0, false, false, StepInfo.None);
        }

        var verdict = RubricJudge.Judge(Task, transcript, table, injections);
        return new StepResult(Observation.Of(Message.UserText(verdict.Passed ? "Thanks, that is all." : "That is not right.")),
            verdict.Passed ? 1 : 0, true, false, new StepInfo
            {
                Correct = verdict.Passed,
                Data = new Dictionary<string, string>
                {
                    ["reason"] = verdict.Reason,
                    ["judge"] = "rubric",
                    ["injected"] = string.Join(",", injections.Select(i => i.Kind)),
                    ["recovered"] = verdict.Recovered.ToString(CultureInfo.InvariantCulture),
                },
            });
    }

    /// <summary>One call: (result text, whether it is the policy's error, why the simulator threw or null).</summary>
    private (string Result, bool IsError, string? Threw) Invoke(ToolCall call)
    {
        var spec = Task!.ToolSpecs.FirstOrDefault(s => s.Name == call.Name);
        if (spec is null)
        {
            return (Error($"unknown tool '{call.Name}' (tools: {string.Join(", ", Task.ToolSpecs.Select(s => s.Name))})"), true, null);
        }

        using var doc = JsonDocument.Parse(call.ArgumentsJson);
        if (ToolSchema.ArgumentProblem(spec, doc.RootElement) is { } problem)
        {
            return (Error(problem), true, null);
        }

        int ordinal = calls++;
        var sim = Task.Tools.FirstOrDefault(t => t.Spec.Name == call.Name);
        string? kind = null;
        if (Task.Failure is { } f && f.Call == ordinal)
        {
            // A wrong-type result needs the real one (of a read tool); the other failures leave the state unchanged.
            kind = f.Kind == InjectedFailure.WrongType && (sim is null || sim.Role == SimToolRole.Reserve) ? InjectedFailure.Error : f.Kind;
            injections.Add(new Injection(call.Id, call.Name, call.ArgumentsJson, kind));
        }

        if (sim is null)
        {
            var outcome = calculator.Invoke(doc.RootElement);
            return kind is null ? (outcome.Content, outcome.IsError, null) : (Inject(kind, call.Name, null, null), false, null);
        }

        if (kind is not null and not InjectedFailure.WrongType)
        {
            return (Inject(kind, call.Name, sim, null), false, null);
        }

        JsonObject result;
        try
        {
            result = sim.Simulate(table, doc.RootElement);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return ("", false, $"simulator of tool '{call.Name}' threw {e.GetType().Name}: {e.Message}");
        }

        return kind is null ? (result.ToJsonString(), result.ContainsKey("error"), null) : (Inject(kind, call.Name, sim, result), false, null);
    }

    /// <summary>
    /// The failed result: a timeout or service error (the simulator's state unchanged: only read calls are planned to
    /// fail), or the real result with its first number (else list) field turned into a string.
    /// </summary>
    private static string Inject(string kind, string tool, SimTool? sim, JsonObject? result)
    {
        switch (kind)
        {
            case InjectedFailure.Timeout:
                return AgenticCatalog.Error("timeout", $"{tool} did not answer within 5 s").ToJsonString();
            case InjectedFailure.WrongType when sim is not null && result is not null && !result.ContainsKey("error"):
                var field = sim.ResultTypes.FirstOrDefault(t => t.Value == JsonValueKind.Number);
                field = field.Key is null ? sim.ResultTypes.First(t => t.Value == JsonValueKind.Array) : field;
                var value = result[field.Key]!;
                result[field.Key] = value is JsonArray a ? string.Join("; ", a.Select(x => x!.ToString())) : value.ToJsonString();
                return result.ToJsonString();
            default:
                return AgenticCatalog.Error("unavailable", "503 service unavailable, try again").ToJsonString();
        }
    }

    private static string Error(string message) => AgenticCatalog.Error("bad_call", message).ToJsonString();

    /// <summary>The actions taken so far; a restore replays them on the task drawn again from the seed.</summary>
    protected override void WriteState(SnapshotWriter w) => w.Write(JsonSerializer.Serialize(actions));

    protected override void ReadState(SnapshotReader r)
    {
        string json = r.ReadString();
        List<string> replay;
        try
        {
            replay = JsonSerializer.Deserialize<List<string>>(json) ?? [];
        }
        catch (JsonException e)
        {
            throw new SnapshotException($"{Name}: snapshot actions are not valid JSON: {e.Message}", e);
        }

        Start();
        foreach (string action in replay)
        {
            Apply(action);
        }
    }
}
