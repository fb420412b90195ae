using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Common.Chat;
using K2RL.Gym;

namespace K2RL.Rollout.Episodes;

/// <summary>
/// An unfinished episode set aside when a call's token budget ran out: everything another process needs to continue
/// it. The sequence so far with its per-token arrays (as in <see cref="Trajectory"/>), the turns taken and the budget
/// used, the reward so far, the conversation, the environment's snapshot, and, when it was paused in the middle of an
/// assistant turn, that turn's engine state (<see cref="InFlight"/>: its prompt is <see cref="Tokens"/>, its tokens
/// so far are not yet in <see cref="Tokens"/>). JSON: format <c>k2rl.paused_episode</c>, version 1.
/// </summary>
public sealed class PausedEpisode
{
    public const string Format = "k2rl.paused_episode";
    public const int FormatVersion = 1;

    public required EpisodeRequest Request { get; init; }

    public required IReadOnlyList<int> Tokens { get; init; }

    public required IReadOnlyList<bool> Generated { get; init; }

    public required IReadOnlyList<float> LogProbs { get; init; }

    public required IReadOnlyList<long> Versions { get; init; }

    /// <summary>The routing record of <see cref="Tokens"/> from the last completed turn (see <see cref="Trajectory.Routing"/>), or null.</summary>
    public int[]? Routing { get; init; }

    public int PromptTokens { get; init; }

    /// <summary>Assistant turns completed (the in-flight one not counted).</summary>
    public int Turns { get; init; }

    /// <summary>Generated tokens of the completed turns (the in-flight turn's are in <see cref="InFlight"/>).</summary>
    public int BudgetUsed { get; init; }

    public double Reward { get; init; }

    public bool? Correct { get; init; }

    public bool Degenerate { get; init; }

    public required IReadOnlyList<Message> Conversation { get; init; }

    /// <summary>How many messages of <see cref="Conversation"/> are in <see cref="Tokens"/>; the rest open the next turn.</summary>
    public int TokenizedMessages { get; init; }

    public required string FirstPrompt { get; init; }

    /// <summary>The environment's <see cref="IEnvironment.SnapshotAsync"/> bytes.</summary>
    public required byte[] EnvSnapshot { get; init; }

    /// <summary>The assistant turn the engine was generating when paused, or null when paused between turns.</summary>
    public PartialRollout? InFlight { get; init; }

    public string ToJson()
    {
        var r = Request;
        return new JsonObject
        {
            ["format"] = Format,
            ["version"] = FormatVersion,
            ["id"] = r.Id,
            ["env"] = r.Env,
            ["task_seed"] = r.TaskSeed.ToString(CultureInfo.InvariantCulture),
            ["difficulty"] = r.Difficulty,
            ["sample"] = r.Sample,
            ["tokens"] = EpisodeJson.Array(Tokens),
            ["generated"] = EpisodeJson.Array(Generated),
            ["logprobs"] = EpisodeJson.Array(LogProbs),   // shortest round-trip text: exact
            ["versions"] = EpisodeJson.Array(Versions),
            ["routing"] = EpisodeJson.Routing(Routing),
            ["prompt_tokens"] = PromptTokens,
            ["turns"] = Turns,
            ["budget_used"] = BudgetUsed,
            ["reward"] = Reward,
            ["correct"] = Correct,
            ["degenerate"] = Degenerate,
            ["conversation"] = EpisodeJson.Messages(Conversation),
            ["tokenized_messages"] = TokenizedMessages,
            ["first_prompt"] = FirstPrompt,
            ["env_snapshot"] = Convert.ToBase64String(EnvSnapshot),
            ["in_flight"] = InFlight is null ? null : JsonNode.Parse(FilePartialRolloutStore.Serialize(InFlight)),
        }.ToJsonString();
    }

    /// <summary>Reads <see cref="ToJson"/>'s text. Throws <see cref="CorruptFileException"/> naming <paramref name="source"/> and the bad field.</summary>
    public static PausedEpisode FromJson(string json, string source = "paused episode")
    {
        var o = EpisodeJson.Parse(json, source);
        var f = new EpisodeJson.Fields(o, source);
        if (f.Get<string>("format") != Format)
        {
            throw new CorruptFileException(source, $"field 'format' is not \"{Format}\"");
        }

        int version = f.Get<int>("version");
        if (version != FormatVersion)
        {
            throw new CorruptFileException(source, $"field 'version' is {version}; this build reads {FormatVersion}");
        }

        string taskSeed = f.Get<string>("task_seed");
        var request = new EpisodeRequest(f.Get<string>("id"), f.Get<string>("env"),
            long.TryParse(taskSeed, NumberStyles.Integer, CultureInfo.InvariantCulture, out long seed) ? seed : throw f.Bad("task_seed", "is not an integer"),
            f.Get<int>("difficulty"), f.Get<int>("sample"));
        var tokens = f.Array<int>("tokens");
        var episode = new PausedEpisode
        {
            Request = request,
            Tokens = tokens,
            Generated = f.Array<bool>("generated", tokens.Length),
            LogProbs = f.Array<float>("logprobs", tokens.Length),
            Versions = f.Array<long>("versions", tokens.Length),
            Routing = f.Routing("routing", tokens.Length),
            PromptTokens = f.Get<int>("prompt_tokens"),
            Turns = f.Get<int>("turns"),
            BudgetUsed = f.Get<int>("budget_used"),
            Reward = f.Get<double>("reward"),
            Correct = o["correct"] is null ? null : f.Get<bool>("correct"),
            Degenerate = f.Get<bool>("degenerate"),
            Conversation = f.Messages("conversation"),
            TokenizedMessages = f.Get<int>("tokenized_messages"),
            FirstPrompt = f.Get<string>("first_prompt"),
            EnvSnapshot = f.Base64("env_snapshot"),
            InFlight = o["in_flight"] is { } inFlight
                ? FilePartialRolloutStore.Deserialize(inFlight.ToJsonString(), $"{source}, field 'in_flight'")
                : null,
        };
        if (episode.PromptTokens > tokens.Length || episode.TokenizedMessages > episode.Conversation.Count)
        {
            throw new CorruptFileException(source, "field 'prompt_tokens' or 'tokenized_messages' is past the end of what it counts");
        }

        return episode;
    }
}
