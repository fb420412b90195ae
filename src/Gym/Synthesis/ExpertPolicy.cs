using K2RL.Common.Chat;
using K2RL.Gym.Eval;

namespace K2RL.Gym.Synthesis;

/// <summary>
/// The default trajectory source: deterministic expert programs, as an <see cref="IPolicy"/> so the pipeline drives
/// them exactly as it drives a model. For a Gym environment with a task generator the expert is the generator's worked
/// <see cref="GymTask.Solution"/> (for tool_use a whole transcript: its assistant turns are played one per step, and
/// the tool results the environment returns must equal the transcript's: <see cref="Expected"/>). For the agentic
/// tasks it is <see cref="AgenticExpert"/>, which reacts to what the tools return. In the environments of
/// <paramref name="detailedEnvs"/> a task's <see cref="GymTask.DetailedSolution"/> is played where its generator writes one.
/// </summary>
public sealed class ExpertPolicy(IReadOnlyList<EpisodePlan> plan, GymRegistry registry, AgenticCatalog catalog, AgenticOptions options,
    IReadOnlySet<string>? detailedEnvs = null) : IPolicy
{
    public Task<IReadOnlyList<string>> GenerateAsync(IReadOnlyList<PolicyRequest> requests, CancellationToken ct = default) =>
        System.Threading.Tasks.Task.FromResult<IReadOnlyList<string>>(requests.Select(r => Act(plan[r.Task], r.Conversation)).ToList());

    private string Act(EpisodePlan p, IReadOnlyList<Message> conversation)
    {
        if (p.Env == AgenticEnvironment.EnvName)
        {
            return AgenticExpert.Act(AgenticTasks.Create(catalog, p.Seed, p.Difficulty, options), conversation);
        }

        int turn = conversation.Count(m => m.Role == Role.Assistant);
        var actions = Actions(Task(p), Detailed(p));
        return turn < actions.Count ? actions[turn] : "";
    }

    /// <summary>The train-split task a Gym environment draws for this plan (null for agentic or generator-less environments).</summary>
    public GymTask? Task(EpisodePlan p) =>
        p.Env == AgenticEnvironment.EnvName || registry.GetEnvironment(p.Env).Generator is not { } g
            ? null
            : g.Generate(p.Seed, Split.Train, p.Difficulty);

    /// <summary>
    /// The whole trajectory the expert means to produce in a Gym environment, in record form (prompt, assistant turns
    /// with parsed tool calls, tool results); null when the expert reacts instead (agentic).
    /// </summary>
    public IReadOnlyList<Message>? Expected(EpisodePlan p)
    {
        if (Task(p) is not { } task)
        {
            return null;
        }

        var messages = task.PromptMessages().ToList();
        foreach (var m in SolutionMessages(task, Detailed(p)))
        {
            messages.Add(m.Role == Role.Assistant ? AssistantRecord(ActionOf(m)) : m);
        }

        return messages;
    }

    /// <summary>An action as a record message: its text, and its tool calls parsed as the environments parse them.</summary>
    public static Message AssistantRecord(string action) =>
        ChatFormat.TryParseToolCalls(action, out string content, out var calls, out _) && calls.Count > 0
            ? new Message(Role.Assistant, content, ToolCalls: calls)
            : Message.AssistantText(action);

    private bool Detailed(EpisodePlan p) => detailedEnvs?.Contains(p.Env) == true;

    private static List<string> Actions(GymTask? task, bool detailed) =>
        task is null ? [] : SolutionMessages(task, detailed).Where(m => m.Role == Role.Assistant).Select(ActionOf).ToList();

    /// <summary>The worked solution as messages: a transcript in the chat format, or one assistant reply.</summary>
    private static IReadOnlyList<Message> SolutionMessages(GymTask task, bool detailed)
    {
        string solution = detailed ? task.DetailedSolution ?? task.Solution : task.Solution;
        return solution.StartsWith(ChatTokens.ImAssistant, StringComparison.Ordinal) && ChatFormat.TryParse(solution, out var messages, out _, out _)
            ? messages
            : [Message.AssistantText(solution)];
    }

    /// <summary>What the policy would generate for an assistant message: its content, then its tool-call section.</summary>
    private static string ActionOf(Message m) =>
        m.ToolCalls is { Count: > 0 } calls ? m.Content + ChatFormat.FormatToolCalls(calls) : m.Content;
}
