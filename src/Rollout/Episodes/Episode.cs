using System.Globalization;
using System.Text.Json.Nodes;
using K2RL.Common.Chat;
using K2RL.Gym;

namespace K2RL.Rollout.Episodes;

/// <summary>
/// One episode to run: which environment, which task (seed and difficulty) and which sample of it. <see cref="Id"/> is
/// unique and stable (e.g. <c>it3-arithmetic-17-s2</c>): the episode's random streams are seeded from it.
/// </summary>
public sealed record EpisodeRequest(string Id, string Env, long TaskSeed, int Difficulty, int Sample);

/// <summary>How an <see cref="EpisodeRunner"/> bounds and samples an episode.</summary>
public sealed record EpisodeOptions
{
    /// <summary>The episode's token budget: generated tokens summed over all assistant turns; each turn may use what is left.</summary>
    public int MaxResponseTokens { get; init; } = 256;

    /// <summary>Assistant turns per episode; at the cap an episode the environment has not ended is truncated.</summary>
    public int MaxTurns { get; init; } = 8;

    /// <summary>The limit on each environment call (reset, step, snapshot, restore); past it the episode ends as failed.</summary>
    public TimeSpan StepTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The environment's total time in one episode (its calls together, counted while the episode is live); past it the episode ends as failed.</summary>
    public TimeSpan EpisodeTimeout { get; init; } = TimeSpan.FromSeconds(600);

    /// <summary>The <see cref="GuardedEnvironment"/> bounds these options give every environment.</summary>
    public EpisodeLimits Limits => new() { MaxTurns = MaxTurns, CallTimeout = StepTimeout, EpisodeTimeout = EpisodeTimeout };

    /// <summary>Each turn's sampling seed is a mix of this, the episode id and the turn: nothing else in the batch changes it.</summary>
    public ulong Seed { get; init; }

    public float TopP { get; init; } = 1f;

    public int TopK { get; init; }
}

/// <summary>
/// One finished episode at the token level. <see cref="Tokens"/> is the whole sequence exactly as the engine saw it:
/// the prompt, each assistant turn as sampled, each observation's tokens appended (never re-tokenized). The per-token
/// arrays all have <see cref="Tokens"/>' length.
/// </summary>
public sealed class Trajectory
{
    public required string Id { get; init; }

    public required string Env { get; init; }

    public long TaskSeed { get; init; }

    public int Difficulty { get; init; }

    public int Sample { get; init; }

    public required int[] Tokens { get; init; }

    /// <summary>The length of the initial prompt (tool declarations, system and user messages).</summary>
    public int PromptTokens { get; init; }

    /// <summary>True for tokens the policy sampled (the only ones the RL loss trains on).</summary>
    public required bool[] Generated { get; init; }

    /// <summary>The log-probability (temperature 1) the sampling weights gave each generated token; 0 elsewhere.</summary>
    public required float[] LogProbs { get; init; }

    /// <summary>The weight version that sampled each generated token; −1 elsewhere.</summary>
    public required long[] Versions { get; init; }

    /// <summary>
    /// The engine's routing record for routing replay: per token, ModelConfig.RoutingStride expert ids (−1 where the
    /// engine did not compute the position, such as the last token); null when the decoder keeps none.
    /// </summary>
    public int[]? Routing { get; init; }

    /// <summary>How many tokens are <see cref="Generated"/>.</summary>
    public int ResponseTokens { get; init; }

    /// <summary>The sum of the environment's step rewards.</summary>
    public double Reward { get; init; }

    /// <summary>The last verdict the environment gave (null when it gave none).</summary>
    public bool? Correct { get; init; }

    /// <summary>
    /// Ended by a limit, not by the environment: a turn hit the token budget or the context, the runner's or the
    /// environment's turn limit was reached.
    /// </summary>
    public bool Truncated { get; init; }

    /// <summary>A turn was ended early by the engine for repeating itself.</summary>
    public bool Degenerate { get; init; }

    /// <summary>The environment threw, timed out or gave a non-finite reward, or the engine refused a turn; <see cref="Error"/> says which.</summary>
    public bool Failed { get; init; }

    public string? Error { get; init; }

    /// <summary>Assistant turns taken.</summary>
    public int Turns { get; init; }

    /// <summary>The text view: initial messages, each assistant action, each observation's messages.</summary>
    public required IReadOnlyList<Message> Conversation { get; init; }

    /// <summary>The initial user-visible prompt text (the user messages of the reset observation), for critic prompts.</summary>
    public required string FirstPrompt { get; init; }

    public const string Format = "k2rl.trajectory";
    public const int FormatVersion = 1;

    /// <summary>One JSON object (format <c>k2rl.trajectory</c>, version 1): the RL job keeps finished responses of unfinished groups in its checkpoints.</summary>
    public string ToJson() => new JsonObject
    {
        ["format"] = Format,
        ["version"] = FormatVersion,
        ["id"] = Id,
        ["env"] = Env,
        ["task_seed"] = TaskSeed.ToString(CultureInfo.InvariantCulture),
        ["difficulty"] = Difficulty,
        ["sample"] = Sample,
        ["tokens"] = EpisodeJson.Array(Tokens),
        ["prompt_tokens"] = PromptTokens,
        ["generated"] = EpisodeJson.Array(Generated),
        ["logprobs"] = EpisodeJson.Array(LogProbs),
        ["versions"] = EpisodeJson.Array(Versions),
        ["routing"] = EpisodeJson.Routing(Routing),
        ["response_tokens"] = ResponseTokens,
        ["reward"] = Reward,
        ["correct"] = Correct,
        ["truncated"] = Truncated,
        ["degenerate"] = Degenerate,
        ["failed"] = Failed,
        ["error"] = Error,
        ["turns"] = Turns,
        ["conversation"] = EpisodeJson.Messages(Conversation),
        ["first_prompt"] = FirstPrompt,
    }.ToJsonString();

    /// <summary>Reads <see cref="ToJson"/>'s text. Throws <see cref="K2RL.Common.CorruptFileException"/> naming <paramref name="source"/> and the bad field.</summary>
    public static Trajectory FromJson(string json, string source = "trajectory")
    {
        var o = EpisodeJson.Parse(json, source);
        var f = new EpisodeJson.Fields(o, source);
        if (f.Get<string>("format") != Format || f.Get<int>("version") != FormatVersion)
        {
            throw f.Bad("format", $"is not {Format} version {FormatVersion}");
        }

        var tokens = f.Array<int>("tokens");
        return new Trajectory
        {
            Id = f.Get<string>("id"),
            Env = f.Get<string>("env"),
            TaskSeed = long.TryParse(f.Get<string>("task_seed"), NumberStyles.Integer, CultureInfo.InvariantCulture, out long seed) ? seed : throw f.Bad("task_seed", "is not an integer"),
            Difficulty = f.Get<int>("difficulty"),
            Sample = f.Get<int>("sample"),
            Tokens = tokens,
            PromptTokens = f.Get<int>("prompt_tokens"),
            Generated = f.Array<bool>("generated", tokens.Length),
            LogProbs = f.Array<float>("logprobs", tokens.Length),
            Versions = f.Array<long>("versions", tokens.Length),
            Routing = f.Routing("routing", tokens.Length),
            ResponseTokens = f.Get<int>("response_tokens"),
            Reward = f.Get<double>("reward"),
            Correct = o["correct"] is null ? null : f.Get<bool>("correct"),
            Truncated = f.Get<bool>("truncated"),
            Degenerate = f.Get<bool>("degenerate"),
            Failed = f.Get<bool>("failed"),
            Error = o["error"] is null ? null : f.Get<string>("error"),
            Turns = f.Get<int>("turns"),
            Conversation = f.Messages("conversation"),
            FirstPrompt = f.Get<string>("first_prompt"),
        };
    }
}

/// <summary>
/// What one <see cref="EpisodeRunner.RunAsync"/> call produced: the episodes that ended, those paused for a later
/// call, the tokens generated and engine steps taken, and how many paused episodes it took back.
/// </summary>
public sealed record EpisodeBatch(IReadOnlyList<Trajectory> Finished, IReadOnlyList<PausedEpisode> Paused, long TokensGenerated,
    int EngineSteps, int Resumed);
