using K2RL.Common.Chat;
using K2RL.Gym;

namespace K2RL.Rollout.Episodes;

/// <summary>An episode an <see cref="EpisodeRunner"/> is running: its sequence so far and where it stands.</summary>
internal sealed class LiveEpisode(EpisodeRequest request, EpisodeOptions options)
{
    public EpisodeRequest Request { get; } = request;

    public EpisodeOptions Options { get; } = options;

    public GuardedEnvironment? Env { get; set; }

    /// <summary>The turn in the engine, or null between turns.</summary>
    public RequestHandle? Handle { get; set; }

    /// <summary>The environment step of the turn that ended, while it runs; nothing else touches the episode meanwhile.</summary>
    public Task? Stepping { get; set; }

    public List<int> Tokens { get; private init; } = [];

    public List<bool> Generated { get; private init; } = [];

    public List<float> LogProbs { get; private init; } = [];

    public List<long> Versions { get; private init; } = [];

    public int PromptTokens { get; set; }

    /// <summary>The routing record of the last completed turn ([positions, stride]; see <see cref="Trajectory.Routing"/>), or null.</summary>
    public int[]? Routing { get; set; }

    public int Turns { get; set; }

    public int BudgetUsed { get; set; }

    public double Reward { get; set; }

    public bool? Correct { get; set; }

    public bool Truncated { get; private set; }

    public bool Degenerate { get; set; }

    public List<Message> Conversation { get; private init; } = [];

    public int TokenizedMessages { get; set; }

    public string FirstPrompt { get; set; } = "";

    public bool Ended { get; private set; }

    public string? Error { get; private set; }

    public static LiveEpisode From(PausedEpisode p, EpisodeOptions options) => new(p.Request, options)
    {
        Tokens = [.. p.Tokens],
        Generated = [.. p.Generated],
        LogProbs = [.. p.LogProbs],
        Versions = [.. p.Versions],
        Routing = p.Routing,
        routingPositions = p.Tokens.Count,
        PromptTokens = p.PromptTokens,
        Turns = p.Turns,
        BudgetUsed = p.BudgetUsed,
        Reward = p.Reward,
        Correct = p.Correct,
        Degenerate = p.Degenerate,
        Conversation = [.. p.Conversation],
        TokenizedMessages = p.TokenizedMessages,
        FirstPrompt = p.FirstPrompt,
    };

    /// <summary>Tokens the policy did not sample: prompt, observations, headers, a closing im_end.</summary>
    public void AppendContext(IEnumerable<int> tokens)
    {
        foreach (int t in tokens)
        {
            Tokens.Add(t);
            Generated.Add(false);
            LogProbs.Add(0f);
            Versions.Add(-1);
        }
    }

    public void AppendGenerated(SampledToken t)
    {
        Tokens.Add(t.Token);
        Generated.Add(true);
        LogProbs.Add(t.LogProb);
        Versions.Add(t.WeightVersion);
    }

    public void End(bool truncated)
    {
        Ended = true;
        Truncated |= truncated;
    }

    public void Fail(string error)
    {
        Ended = true;
        Error ??= error;
    }

    /// <summary>Takes a finished turn's routing record (prompt + tokens of that request), kept until the next turn ends.</summary>
    public void TakeRouting(GenerationResult result)
    {
        int positions = result.Prompt.Count + result.Tokens.Count;
        Routing = result.Routing is { } r && positions > 0 && r.Length % positions == 0 ? r : null;
        routingPositions = positions;
    }

    private int routingPositions;

    /// <summary>The routing record cut or padded (−1) to the episode's tokens, or null.</summary>
    private int[]? RoutingOfTokens()
    {
        if (Routing is not { } r)
        {
            return null;
        }

        int stride = r.Length / Math.Max(routingPositions, 1);
        var ids = new int[Tokens.Count * stride];
        ids.AsSpan().Fill(-1);
        r.AsSpan(0, Math.Min(r.Length, ids.Length)).CopyTo(ids);
        return ids;
    }

    public Trajectory ToTrajectory() => new()
    {
        Id = Request.Id,
        Env = Request.Env,
        TaskSeed = Request.TaskSeed,
        Difficulty = Request.Difficulty,
        Sample = Request.Sample,
        Tokens = [.. Tokens],
        PromptTokens = PromptTokens,
        Generated = [.. Generated],
        LogProbs = [.. LogProbs],
        Versions = [.. Versions],
        Routing = RoutingOfTokens(),
        ResponseTokens = Generated.Count(g => g),
        Reward = Reward,
        Correct = Correct,
        Truncated = Truncated,
        Degenerate = Degenerate,
        Failed = Error is not null,
        Error = Error,
        Turns = Turns,
        Conversation = [.. Conversation],
        FirstPrompt = FirstPrompt,
    };

    public PausedEpisode ToPaused(byte[] envSnapshot, PartialRollout? inFlight) => new()
    {
        Request = Request,
        Tokens = [.. Tokens],
        Generated = [.. Generated],
        LogProbs = [.. LogProbs],
        Versions = [.. Versions],
        Routing = RoutingOfTokens(),
        PromptTokens = PromptTokens,
        Turns = Turns,
        BudgetUsed = BudgetUsed,
        Reward = Reward,
        Correct = Correct,
        Degenerate = Degenerate,
        Conversation = [.. Conversation],
        TokenizedMessages = TokenizedMessages,
        FirstPrompt = FirstPrompt,
        EnvSnapshot = envSnapshot,
        InFlight = inFlight,
    };
}
