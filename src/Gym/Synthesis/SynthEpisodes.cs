using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using K2RL.Common.Chat;
using K2RL.Gym.Eval;

namespace K2RL.Gym.Synthesis;

/// <summary>A judged trajectory: its record (verdict inside), the reason code when rejected, and its injected failures.</summary>
internal sealed record SynthOutcome(SftRecord Record, string? RejectCode, IReadOnlyList<Injection> Injections, int Recovered, int AssistantTurns)
{
    public int? Tokens { get; init; }

    /// <summary>Tokens of the longest assistant turn (what one generation must fit in), when counted.</summary>
    public int? TurnTokens { get; init; }

    public bool Kept => RejectCode is null;

    public string Hash { get; init; } = "";
}

/// <summary>
/// Plays a chunk of planned episodes in lockstep through their real environments: every episode waiting for an action
/// goes to the source in one batch, each action is stepped in its environment (behind a <see cref="GuardedEnvironment"/>),
/// and the environment's observations are appended. The record keeps exactly what the environment presented (prompt,
/// tool declarations, tool results, simulated-user turns) and the actions with their tool calls parsed as the
/// environment parses them; then <see cref="Judge"/> decides.
/// </summary>
internal sealed class SynthEpisodes(SynthJob job, GymRegistry registry, AgenticCatalog catalog, IPolicy policy, string source,
    Func<SftRecord, int>? tokenCounter)
{
    private readonly ExpertPolicy? expert = policy as ExpertPolicy;

    public async Task<SynthOutcome[]> RunAsync(IReadOnlyList<EpisodePlan> chunk, CancellationToken ct)
    {
        var live = chunk.Select(p => new Live(p)).ToList();
        foreach (var e in live)
        {
            await StartAsync(e, ct);
        }

        while (live.Where(e => e.Outcome is null).ToList() is { Count: > 0 } active)
        {
            var actions = await policy.GenerateAsync(
                active.Select(e => new PolicyRequest(e.Conversation, e.Tools, e.Plan.Index, 0)).ToList(), ct);
            if (actions.Count != active.Count)
            {
                throw new K2RL.Common.K2Exception($"the trajectory source ({source}) returned {actions.Count} actions for {active.Count} requests");
            }

            await Task.WhenAll(active.Select((e, i) => StepAsync(e, actions[i], ct)));
        }

        foreach (var e in live)
        {
            await e.Env!.CloseAsync();
        }

        return live.Select(e => e.Outcome!).ToArray();
    }

    private IEnvironment Create(string env) => env == AgenticEnvironment.EnvName
        ? new AgenticEnvironment(catalog, job.Agentic)
        : registry.CreateEnvironment(env);

    private async Task StartAsync(Live e, CancellationToken ct)
    {
        var p = e.Plan;
        e.Env = new GuardedEnvironment(Create(p.Env), new EpisodeLimits { MaxTurns = job.MaxTurns }, p.Env);
        Observation obs;
        try
        {
            obs = await e.Env.ResetAsync(p.Seed, new ResetOptions { Split = Split.Train, Difficulty = p.Difficulty }, ct);
        }
        catch (EnvironmentFailedException ex)
        {
            Finish(e, "env_failed", ex.Message, null);
            return;
        }

        e.Tools = obs.Tools;
        e.Conversation.AddRange(obs.Messages);
        e.Record.AddRange(obs.Messages);
        if (obs.Tools.Select(ToolSchema.Problem).FirstOrDefault(x => x is not null) is { } bad)
        {
            Finish(e, "invalid_tool_schema", bad, null);
        }
        else if (registry.Environments.FirstOrDefault(x => x.Name == p.Env)?.Generator is { } g
                 && g.Generate(p.Seed, Split.Train, p.Difficulty) is var task && SplitAssigner.SplitOf(g.Kind, task.Id) != Split.Train)
        {
            Finish(e, "held_out", $"task '{task.Id}' belongs to the held-out split", null);
        }
    }

    private async Task StepAsync(Live e, string action, CancellationToken ct)
    {
        e.Conversation.Add(Message.AssistantText(action));
        e.Record.Add(ExpertPolicy.AssistantRecord(action));
        var step = await e.Env!.StepAsync(action, ct);
        if (step.Failed)
        {
            Finish(e, step.Info.Data.GetValueOrDefault("code", "env_failed"), step.Info.Failure!, step);
        }
        else if (step.Done)
        {
            Finish(e, null, null, step);
        }
        else
        {
            e.Conversation.AddRange(step.Observation.Messages);
            e.Record.AddRange(step.Observation.Messages);
        }
    }

    /// <summary>Judges a finished episode: a failure's code, else the chat format, the expert's divergence, truncation, then the environment's own verdict.</summary>
    private void Finish(Live e, string? code, string? why, StepResult? last)
    {
        var p = e.Plan;
        var agentic = (e.Env?.Inner as AgenticEnvironment);
        var record = new SftRecord { Id = "-", Messages = e.Record, Tools = e.Tools.Select(SynthChecks.Writable).ToList(), Env = p.Env, Difficulty = p.Difficulty };
        string judge = last?.Info.Data.GetValueOrDefault("judge", "verifier") ?? "pipeline";
        if (code is null)
        {
            (code, why) = SynthChecks.ChatFormatProblem(record) is { } format ? ("chat_format", format)
                : expert?.Expected(p) is { } expected && SynthChecks.Divergence(expected, e.Record) is { } diverged ? ("diverged", diverged)
                : last!.Truncated && !last.Terminated ? ("truncated", $"no final answer in {job.MaxTurns} turn(s)")
                : last.Info.Correct == true ? (null, last.Info.Data.GetValueOrDefault("reason", "correct"))
                : (judge, last.Info.Data.GetValueOrDefault("reason", last.Info.Error ?? "not correct"));
        }

        int? tokens = code is null && tokenCounter is not null ? tokenCounter(record) : null;
        int? turnTokens = tokens is null ? null : e.Record.Where(m => m.Role == Role.Assistant)
            .Max(m => tokenCounter!(new SftRecord { Id = "-", Messages = [m] }));
        if (tokens > job.MaxTokens && job.MaxTokens > 0)
        {
            (code, why) = ("too_long", $"{tokens} tokens, the job's output.max_tokens is {job.MaxTokens}");
        }

        string hash = SynthChecks.ContentHash(record);
        var task = expert?.Task(p) ?? (e.Env?.Inner as TaskEnvironment)?.Task ?? (e.Env?.Inner as ToolTaskEnvironment)?.Task;
        e.Outcome = new SynthOutcome(record with
        {
            Id = hash[..24],
            RubricJson = agentic?.Task?.RubricJson() ?? VerifierRubric(task),
            Verdict = new SftVerdict(code is null, code is null ? judge : code, why ?? ""),
            ProvenanceJson = Provenance(p, task?.Id ?? agentic?.Task?.Id),
        }, code, agentic?.Injections.ToList() ?? [], int.Parse(last?.Info.Data.GetValueOrDefault("recovered", "0") ?? "0", System.Globalization.CultureInfo.InvariantCulture),
            e.Record.Count(m => m.Role == Role.Assistant)) { Hash = hash, Tokens = tokens, TurnTokens = turnTokens };
    }

    private static string VerifierRubric(GymTask? task) => new JsonObject
    {
        ["judge"] = "verifier",
        ["success_criteria"] = "the environment's verifier accepts the final answer",
        ["answer"] = task?.Answer,
    }.ToJsonString();

    private string Provenance(EpisodePlan p, string? taskId) => new JsonObject
    {
        ["pipeline"] = "k2rl synth",
        ["source"] = source,
        ["job"] = job.Source,
        ["job_seed"] = job.Seed,
        ["index"] = p.Index,
        ["seed"] = p.Seed,
        ["split"] = "train",
        ["task_id"] = taskId,
    }.ToJsonString();

    private sealed class Live(EpisodePlan plan)
    {
        public EpisodePlan Plan { get; } = plan;

        public GuardedEnvironment? Env { get; set; }

        public IReadOnlyList<ToolSpec> Tools { get; set; } = [];

        /// <summary>What the policy sees: assistant actions as generated text (so the rollout engine continues its tokens).</summary>
        public List<Message> Conversation { get; } = [];

        /// <summary>What the record keeps: the same, with each action's tool calls parsed.</summary>
        public List<Message> Record { get; } = [];

        public SynthOutcome? Outcome { get; set; }
    }
}

/// <summary>The pipeline's checks on a record: the chat format, the expert's divergence, and the content hash that deduplicates.</summary>
public static class SynthChecks
{
    /// <summary>Null when the record is valid for SFT (<see cref="SftRecord.Validate"/>) and no content holds a chat special token.</summary>
    public static string? ChatFormatProblem(SftRecord record)
    {
        if (record.Validate() is { } problem)
        {
            return problem;
        }

        for (int i = 0; i < record.Messages.Count; i++)
        {
            if (ChatTokens.All.FirstOrDefault(t => record.Messages[i].Content.Contains(t, StringComparison.Ordinal)) is { } special)
            {
                return $"message {i} content holds the chat special token {special}";
            }
        }

        return null;
    }

    /// <summary>Null when the environment's trajectory is the one the expert meant, else the first difference.</summary>
    public static string? Divergence(IReadOnlyList<Message> expected, IReadOnlyList<Message> got)
    {
        for (int i = 0; i < Math.Max(expected.Count, got.Count); i++)
        {
            if (i >= expected.Count || i >= got.Count)
            {
                return $"{got.Count} message(s), the expert's transcript has {expected.Count}";
            }

            var (a, b) = (expected[i], got[i]);
            if (a.Role != b.Role || a.Content != b.Content || a.ToolCallId != b.ToolCallId
                || !(a.ToolCalls ?? []).Select(c => (c.Id, c.ArgumentsJson)).SequenceEqual((b.ToolCalls ?? []).Select(c => (c.Id, c.ArgumentsJson))))
            {
                return $"message {i} ({b.Role}): the environment gave '{Clip(b.Content)}', the expert's transcript has '{Clip(a.Content)}'";
            }
        }

        return null;
    }

    /// <summary>The spec itself, or (for a rejected record) one whose parameters are not JSON, with them kept as a JSON string.</summary>
    public static ToolSpec Writable(ToolSpec spec)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(spec.ParametersSchemaJson);
            return spec;
        }
        catch (System.Text.Json.JsonException)
        {
            return spec with { ParametersSchemaJson = new JsonObject { ["invalid_schema"] = spec.ParametersSchemaJson }.ToJsonString() };
        }
    }

    /// <summary>SHA-256 (hex) of the record's messages and tools as written: equal content, equal hash.</summary>
    public static string ContentHash(SftRecord record)
    {
        string canonical = new SftRecord { Id = "-", Messages = record.Messages, Tools = record.Tools }.ToJsonLine();
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonical)));
    }

    private static string Clip(string s) => s.Length <= 60 ? s : s[..60] + "…";
}
