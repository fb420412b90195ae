using System.Text.Json;
using K2RL.Common.Chat;

namespace K2RL.Gym;

/// <summary>
/// A multi-turn environment with tools. Each action either calls tools (in the chat format; the results come back as
/// the next observation, as <see cref="Role.Tool"/> messages) or answers (scored by the verifier; the episode ends).
/// Malformed sections, unknown tools and bad arguments cost <see cref="EnvironmentLimits.InvalidActionPenalty"/> each
/// and are reported in the observation; the episode goes on until <see cref="EnvironmentLimits.MaxTurns"/>.
/// The episode's return is the sum of its step rewards.
/// </summary>
public class ToolTaskEnvironment : EnvironmentBase
{
    private readonly ITaskGenerator generator;
    private readonly IVerifier verifier;
    private readonly Func<GymTask, IReadOnlyList<ITool>> toolsFor;
    private Dictionary<string, ITool> tools = [];
    private IReadOnlyList<ToolSpec> specs = [];

    public ToolTaskEnvironment(string name, ITaskGenerator generator, IVerifier verifier,
        Func<GymTask, IReadOnlyList<ITool>> toolsFor, EnvironmentLimits? limits = null)
        : base(name, limits ?? new EnvironmentLimits { MaxTurns = 8 })
    {
        this.generator = generator;
        this.verifier = verifier;
        this.toolsFor = toolsFor;
    }

    public GymTask? Task { get; private set; }

    /// <summary>Tool calls made in this episode, and how many of them were penalized.</summary>
    public int ToolCalls { get; private set; }

    public int BadCalls { get; private set; }

    protected override ValueTask<Observation> OnResetAsync(CancellationToken ct)
    {
        SetTask(generator.Generate(Seed, Options.Split, Options.Difficulty));
        ToolCalls = 0;
        BadCalls = 0;
        return ValueTask.FromResult(new Observation(Task!.PromptMessages(), specs));
    }

    protected override async ValueTask<StepResult> OnStepAsync(string action, CancellationToken ct)
    {
        if (!ChatFormat.TryParseToolCalls(action, out string content, out var calls, out string? error))
        {
            BadCalls++;
            return Invalid("malformed tool call: " + error);
        }

        if (calls.Count == 0)
        {
            var verdict = await verifier.VerifyAsync(new VerifyRequest(content, Task!), ct);
            return new StepResult(
                Observation.Of(Message.UserText(verdict.Passed ? "Correct." : "Incorrect: " + verdict.Reason)),
                verdict.Reward, true, false, new StepInfo
                {
                    Correct = verdict.Passed,
                    Data = new Dictionary<string, string>
                    {
                        ["reason"] = verdict.Reason,
                        ["tool_calls"] = ToolCalls.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    },
                });
        }

        var results = new List<Message>(calls.Count);
        var errors = new List<string>();
        foreach (var call in calls)
        {
            ToolCalls++;
            ToolOutcome outcome;
            if (!tools.TryGetValue(call.Name, out var tool))
            {
                outcome = ToolOutcome.Error($"unknown tool '{call.Name}' (tools: {string.Join(", ", tools.Keys)})");
            }
            else
            {
                using var doc = JsonDocument.Parse(call.ArgumentsJson);
                outcome = tool.Invoke(doc.RootElement);
            }

            if (outcome.IsError)
            {
                BadCalls++;
                errors.Add($"{call.Id}: {outcome.Content}");
            }

            results.Add(Message.ToolResult(call.Id, outcome.Content));
        }

        return new StepResult(new Observation(results, []), -Limits.InvalidActionPenalty * errors.Count, false, false,
            errors.Count == 0 ? StepInfo.None : new StepInfo { Error = string.Join("; ", errors) });
    }

    protected override void WriteState(SnapshotWriter w) =>
        w.Write(Task?.ToJson() ?? "").Write(ToolCalls).Write(BadCalls);

    protected override void ReadState(SnapshotReader r)
    {
        string json = r.ReadString();
        ToolCalls = r.ReadInt32();
        BadCalls = r.ReadInt32();
        try
        {
            if (json.Length > 0)
            {
                SetTask(GymTask.FromJson(json));
            }
        }
        catch (JsonException e)
        {
            throw new SnapshotException($"{Name}: snapshot task is not valid JSON: {e.Message}", e);
        }
    }

    private void SetTask(GymTask task)
    {
        Task = task;
        var list = toolsFor(task);
        tools = list.ToDictionary(t => t.Spec.Name);
        specs = list.Select(t => t.Spec).ToList();
    }
}
