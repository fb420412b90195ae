using System.Globalization;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Rollout.Episodes;

namespace K2RL.Rollout.Workers;

/// <summary>
/// One episode for a rollout worker (JSON format <c>k2rl.rollout_item</c>, version 1): a fresh <see cref="EpisodeRequest"/>
/// or a <see cref="PausedEpisode"/> to continue, with the trainer's epoch, the weight version it must run at, the
/// sampling temperature, its share of the iteration's token budget (0: none) and the episode options of its env.
/// </summary>
public sealed record RolloutWorkItem
{
    public const string Format = "k2rl.rollout_item";
    public const int FormatVersion = 1;

    /// <summary>Unique per enqueue: <c>e{epoch}.c{call}.{episode id}</c>.</summary>
    public required string Id { get; init; }

    public required long Epoch { get; init; }

    public required long WeightsVersion { get; init; }

    public required float Temperature { get; init; }

    public long TokenBudget { get; init; }

    public required EpisodeOptions Options { get; init; }

    public EpisodeRequest? Request { get; init; }

    public PausedEpisode? Paused { get; init; }

    public EpisodeRequest Episode => Request ?? Paused!.Request;

    public string ToJson()
    {
        var o = Options;
        var json = new JsonObject
        {
            ["format"] = Format,
            ["version"] = FormatVersion,
            ["id"] = Id,
            ["epoch"] = Epoch,
            ["weights_version"] = WeightsVersion,
            ["temperature"] = Temperature,
            ["token_budget"] = TokenBudget,
            ["options"] = new JsonObject
            {
                ["max_response_tokens"] = o.MaxResponseTokens,
                ["max_turns"] = o.MaxTurns,
                ["step_timeout_s"] = o.StepTimeout.TotalSeconds,
                ["episode_timeout_s"] = o.EpisodeTimeout.TotalSeconds,
                ["seed"] = o.Seed.ToString(CultureInfo.InvariantCulture),
                ["top_p"] = o.TopP,
                ["top_k"] = o.TopK,
            },
        };
        if (Request is { } r)
        {
            json["request"] = new JsonObject
            {
                ["id"] = r.Id,
                ["env"] = r.Env,
                ["task_seed"] = r.TaskSeed.ToString(CultureInfo.InvariantCulture),
                ["difficulty"] = r.Difficulty,
                ["sample"] = r.Sample,
            };
        }
        else
        {
            json["paused"] = JsonNode.Parse(Paused!.ToJson());
        }

        return json.ToJsonString();
    }

    /// <summary>Reads <see cref="ToJson"/>'s text; anything else is a <see cref="CorruptFileException"/> naming <paramref name="source"/> and the field.</summary>
    public static RolloutWorkItem FromJson(string json, string source)
    {
        var o = EpisodeJson.Parse(json, source);
        var f = new EpisodeJson.Fields(o, source);
        if (f.Get<string>("format") != Format || f.Get<int>("version") != FormatVersion)
        {
            throw f.Bad("format", $"is not {Format} version {FormatVersion}");
        }

        if (o["options"] is not JsonObject opts)
        {
            throw f.Bad("options", "is missing or not an object");
        }

        var of = new EpisodeJson.Fields(opts, source, "options.");
        var options = new EpisodeOptions
        {
            MaxResponseTokens = Positive(of, "max_response_tokens"),
            MaxTurns = Positive(of, "max_turns"),
            StepTimeout = TimeSpan.FromSeconds(of.Get<double>("step_timeout_s")),
            EpisodeTimeout = TimeSpan.FromSeconds(of.Get<double>("episode_timeout_s")),
            Seed = ulong.TryParse(of.Get<string>("seed"), NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong seed) ? seed : throw of.Bad("seed", "is not an integer"),
            TopP = of.Get<float>("top_p"),
            TopK = of.Get<int>("top_k"),
        };
        EpisodeRequest? request = null;
        PausedEpisode? paused = null;
        if (o["request"] is JsonObject req)
        {
            var rf = new EpisodeJson.Fields(req, source, "request.");
            request = new EpisodeRequest(rf.Get<string>("id"), rf.Get<string>("env"),
                long.TryParse(rf.Get<string>("task_seed"), NumberStyles.Integer, CultureInfo.InvariantCulture, out long ts) ? ts : throw rf.Bad("task_seed", "is not an integer"),
                rf.Get<int>("difficulty"), rf.Get<int>("sample"));
        }
        else if (o["paused"] is JsonObject p)
        {
            paused = PausedEpisode.FromJson(p.ToJsonString(), $"{source}, field 'paused'");
        }
        else
        {
            throw f.Bad("request", "and 'paused' are both missing: an item holds one of them");
        }

        return new RolloutWorkItem
        {
            Id = f.Get<string>("id"),
            Epoch = f.Get<long>("epoch"),
            WeightsVersion = f.Get<long>("weights_version"),
            Temperature = f.Get<float>("temperature"),
            TokenBudget = f.Get<long>("token_budget"),
            Options = options,
            Request = request,
            Paused = paused,
        };
    }

    private static int Positive(EpisodeJson.Fields f, string field)
    {
        int v = f.Get<int>(field);
        return v >= 1 ? v : throw f.Bad(field, $"is {v}, not >= 1");
    }
}

/// <summary>
/// A worker's answer to one <see cref="RolloutWorkItem"/> (JSON format <c>k2rl.rollout_result</c>, version 1): the
/// finished <see cref="Trajectory"/> or the <see cref="PausedEpisode"/> to continue later, which worker ran it at which
/// weight version, and the tokens it generated for this episode in this run.
/// </summary>
public sealed record RolloutWorkResult
{
    public const string Format = "k2rl.rollout_result";
    public const int FormatVersion = 1;

    public required string Id { get; init; }

    public required string Worker { get; init; }

    public required long WeightsVersion { get; init; }

    public long TokensGenerated { get; init; }

    /// <summary>The engine steps of the worker's batch (on the batch's first item only, so a sum counts each batch once).</summary>
    public int EngineSteps { get; init; }

    public Trajectory? Trajectory { get; init; }

    public PausedEpisode? Paused { get; init; }

    public string EpisodeId => Trajectory?.Id ?? Paused!.Request.Id;

    public string ToJson()
    {
        var json = new JsonObject
        {
            ["format"] = Format,
            ["version"] = FormatVersion,
            ["id"] = Id,
            ["worker"] = Worker,
            ["weights_version"] = WeightsVersion,
            ["tokens_generated"] = TokensGenerated,
            ["engine_steps"] = EngineSteps,
        };
        if (Trajectory is { } t)
        {
            json["trajectory"] = JsonNode.Parse(t.ToJson());
        }
        else
        {
            json["paused"] = JsonNode.Parse(Paused!.ToJson());
        }

        return json.ToJsonString();
    }

    public static RolloutWorkResult FromJson(string json, string source)
    {
        var o = EpisodeJson.Parse(json, source);
        var f = new EpisodeJson.Fields(o, source);
        if (f.Get<string>("format") != Format || f.Get<int>("version") != FormatVersion)
        {
            throw f.Bad("format", $"is not {Format} version {FormatVersion}");
        }

        Trajectory? trajectory = null;
        PausedEpisode? paused = null;
        if (o["trajectory"] is JsonObject t)
        {
            trajectory = Episodes.Trajectory.FromJson(t.ToJsonString(), $"{source}, field 'trajectory'");
        }
        else if (o["paused"] is JsonObject p)
        {
            paused = PausedEpisode.FromJson(p.ToJsonString(), $"{source}, field 'paused'");
        }
        else
        {
            throw f.Bad("trajectory", "and 'paused' are both missing: a result holds one of them");
        }

        return new RolloutWorkResult
        {
            Id = f.Get<string>("id"),
            Worker = f.Get<string>("worker"),
            WeightsVersion = f.Get<long>("weights_version"),
            TokensGenerated = f.Get<long>("tokens_generated"),
            EngineSteps = f.Get<int>("engine_steps"),
            Trajectory = trajectory,
            Paused = paused,
        };
    }
}
