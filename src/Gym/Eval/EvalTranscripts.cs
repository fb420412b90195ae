using System.Text.Json.Nodes;
using K2RL.Gym.Synthesis;

namespace K2RL.Gym.Eval;

/// <summary>
/// An evaluation's episodes as JSON Lines, one per episode in (task, sample) order, for reading what a model did:
/// <c>{"env", "difficulty", "task_seed", "sample", "correct", "return", "truncated", "failure", "messages": [...]}</c>,
/// the messages in the OpenAI chat layout (an action's tool calls as <c>tool_calls</c>, tool results with
/// <c>tool_call_id</c>), as <c>k2rl synth</c> writes SFT records.
/// </summary>
public static class EvalTranscripts
{
    /// <param name="taskSeedBase">the seed of task 0 (<see cref="EvalOptions.SeedBase"/>): each line names its task's seed.</param>
    public static void Write(EvalReport report, long taskSeedBase, int difficulty, TextWriter w)
    {
        foreach (var e in report.Episodes)
        {
            var line = new JsonObject
            {
                ["env"] = report.Env,
                ["difficulty"] = difficulty,
                ["task_seed"] = taskSeedBase + e.Task,
                ["sample"] = e.Sample,
                ["correct"] = e.Correct,
                ["return"] = e.Return,
                ["truncated"] = e.Truncated,
                ["failure"] = e.Failure,
                ["messages"] = new JsonArray(e.Conversation.Select(m => (JsonNode?)OpenAiPolicy.ToOpenAi(m)).ToArray()),
            };
            w.WriteLine(line.ToJsonString());
        }
    }
}
