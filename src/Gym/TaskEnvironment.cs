using K2RL.Common.Chat;

namespace K2RL.Gym;

/// <summary>
/// A single-turn environment made of a task generator and a verifier: Reset draws a task from the seed, Step scores
/// the response and ends the episode. Arithmetic, countdown, list operations and code are this class; a new task
/// family is one generator and (usually) an existing verifier.
/// </summary>
public class TaskEnvironment : EnvironmentBase
{
    private readonly ITaskGenerator generator;
    private readonly IVerifier verifier;

    public TaskEnvironment(string name, ITaskGenerator generator, IVerifier verifier, EnvironmentLimits? limits = null)
        : base(name, limits)
    {
        this.generator = generator;
        this.verifier = verifier;
    }

    /// <summary>The current episode's task (null before Reset).</summary>
    public GymTask? Task { get; private set; }

    public ITaskGenerator Generator => generator;

    protected override ValueTask<Observation> OnResetAsync(CancellationToken ct)
    {
        Task = generator.Generate(Seed, Options.Split, Options.Difficulty);
        return ValueTask.FromResult(new Observation(Task.PromptMessages(), []));
    }

    protected override async ValueTask<StepResult> OnStepAsync(string action, CancellationToken ct)
    {
        if (action.Contains(ChatTokens.ToolCallsSectionBegin, StringComparison.Ordinal))
        {
            return Invalid($"{Name} has no tools; answer directly", terminated: true);
        }

        var verdict = await verifier.VerifyAsync(new VerifyRequest(action, Task!), ct);
        string feedback = verdict.Passed ? "Correct." : "Incorrect: " + verdict.Reason;
        return new StepResult(Observation.Of(Message.UserText(feedback)), verdict.Reward, true, false,
            new StepInfo
            {
                Correct = verdict.Passed,
                Data = new Dictionary<string, string> { ["reason"] = verdict.Reason, ["verifier"] = verifier.Name },
            });
    }

    protected override void WriteState(SnapshotWriter w) => w.Write(Task?.ToJson() ?? "");

    protected override void ReadState(SnapshotReader r)
    {
        string json = r.ReadString();
        try
        {
            Task = json.Length == 0 ? null : GymTask.FromJson(json);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new SnapshotException($"{Name}: snapshot task is not valid JSON: {e.Message}", e);
        }
    }
}
