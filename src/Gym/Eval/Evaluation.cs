using System.Text.Json;
using K2RL.Common.Chat;

namespace K2RL.Gym.Eval;

/// <summary>One generation request: the conversation so far and the tools, for sample <see cref="Sample"/> of a task.</summary>
public sealed record PolicyRequest(IReadOnlyList<Message> Conversation, IReadOnlyList<ToolSpec> Tools, int Task, int Sample);

/// <summary>
/// The seam between the Gym and whatever generates: the rollout engine (a checkpoint), a remote model, or a script in
/// tests. Gets a batch of conversations and returns one assistant action per request, in order.
/// </summary>
public interface IPolicy
{
    Task<IReadOnlyList<string>> GenerateAsync(IReadOnlyList<PolicyRequest> requests, CancellationToken ct = default);
}

/// <summary>A policy from a function (tests, baselines).</summary>
public sealed class ScriptedPolicy(Func<PolicyRequest, string> act) : IPolicy
{
    public Task<IReadOnlyList<string>> GenerateAsync(IReadOnlyList<PolicyRequest> requests, CancellationToken ct = default) =>
        Task.FromResult<IReadOnlyList<string>>(requests.Select(act).ToList());
}

public sealed record EvalOptions
{
    /// <summary>Held-out tasks (seeds <see cref="SeedBase"/>..+N-1).</summary>
    public int N { get; init; } = 200;

    /// <summary>Samples per task; pass@k is reported for k = 1, 2, 4, ... up to this.</summary>
    public int SamplesPerTask { get; init; } = 1;

    public int Difficulty { get; init; } = 1;

    public long SeedBase { get; init; }

    public Split Split { get; init; } = Split.HeldOut;
}

/// <summary>
/// The result of an evaluation: accuracy (fraction of all samples judged correct), pass@k (unbiased estimator of
/// Chen et al. 2021 from n samples per task), mean episode return. <see cref="ToJson"/> writes
/// <c>{"env", "n", "accuracy", "pass_at_k": {"1": .., "4": ..}, ...}</c>.
/// </summary>
public sealed record EvalReport(string Env, int N, int SamplesPerTask, double Accuracy,
    IReadOnlyDictionary<int, double> PassAtK, double MeanReturn, int Truncated)
{
    /// <summary>Every episode, in (task, sample) order (not in <see cref="ToJson"/>).</summary>
    public IReadOnlyList<EpisodeOutcome> Episodes { get; init; } = [];

    public string ToJson() => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["env"] = Env,
        ["n"] = N,
        ["samples_per_task"] = SamplesPerTask,
        ["accuracy"] = Accuracy,
        ["pass_at_k"] = PassAtK.ToDictionary(kv => kv.Key.ToString(System.Globalization.CultureInfo.InvariantCulture), kv => kv.Value),
        ["mean_return"] = MeanReturn,
        ["truncated"] = Truncated,
    });
}

/// <summary>Runs a policy over the held-out split of an environment, all episodes of a turn in one batch.</summary>
/// <summary>One evaluated episode: whether it was judged correct, its return, and the policy's actions in turn order.</summary>
public sealed record EpisodeOutcome(int Task, int Sample, bool Correct, double Return, bool Truncated, IReadOnlyList<string> Actions);

public static class Evaluator
{
    public static async Task<EvalReport> RunAsync(string envName, Func<IEnvironment> createEnvironment, IPolicy policy,
        EvalOptions options, CancellationToken ct = default)
    {
        int n = options.N, k = Math.Max(1, options.SamplesPerTask);
        var episodes = new List<Episode>(n * k);
        try
        {
            for (int t = 0; t < n; t++)
            {
                for (int s = 0; s < k; s++)
                {
                    var env = createEnvironment();
                    var obs = await env.ResetAsync(options.SeedBase + t,
                        new ResetOptions { Split = options.Split, Difficulty = options.Difficulty }, ct);
                    episodes.Add(new Episode(env, t, s, [.. obs.Messages], obs.Tools));
                }
            }

            while (episodes.Any(e => !e.Done))
            {
                var live = episodes.Where(e => !e.Done).ToList();
                var actions = await policy.GenerateAsync(
                    live.Select(e => new PolicyRequest(e.Conversation, e.Tools, e.Task, e.Sample)).ToList(), ct);
                for (int i = 0; i < live.Count; i++)
                {
                    var e = live[i];
                    string action = i < actions.Count ? actions[i] : "";
                    var step = await e.Env.StepAsync(action, ct);
                    e.Actions.Add(action);
                    e.Conversation.Add(Message.AssistantText(action));
                    e.Conversation.AddRange(step.Observation.Messages);
                    e.Return += step.Reward;
                    e.Correct = step.Info.Correct ?? e.Correct;
                    e.Done = step.Done;
                    e.Truncated = step.Truncated;
                }
            }
        }
        finally
        {
            foreach (var e in episodes)
            {
                await e.Env.CloseAsync();
            }
        }

        double accuracy = episodes.Count == 0 ? 0 : episodes.Count(e => e.Correct) / (double)episodes.Count;
        var passAtK = new SortedDictionary<int, double>();
        for (int kk = 1; kk <= k; kk *= 2)
        {
            passAtK[kk] = Enumerable.Range(0, n).Select(t =>
                PassAtK(k, episodes.Count(e => e.Task == t && e.Correct), kk)).DefaultIfEmpty(0).Average();
        }

        if (!passAtK.ContainsKey(k))
        {
            passAtK[k] = Enumerable.Range(0, n).Select(t =>
                PassAtK(k, episodes.Count(e => e.Task == t && e.Correct), k)).DefaultIfEmpty(0).Average();
        }

        return new EvalReport(envName, n, k, accuracy, passAtK,
            episodes.Count == 0 ? 0 : episodes.Average(e => e.Return), episodes.Count(e => e.Truncated))
        {
            Episodes = episodes.Select(e => new EpisodeOutcome(e.Task, e.Sample, e.Correct, e.Return, e.Truncated, e.Actions)).ToList(),
        };
    }

    /// <summary>Unbiased pass@k from n samples with c correct: 1 − C(n−c, k)/C(n, k).</summary>
    public static double PassAtK(int n, int c, int k)
    {
        if (n - c < k)
        {
            return 1.0;
        }

        double p = 1.0;
        for (int i = n - c + 1; i <= n; i++)
        {
            p *= 1.0 - k / (double)i;
        }

        return 1.0 - p;
    }

    private sealed class Episode(IEnvironment env, int task, int sample, List<Message> conversation, IReadOnlyList<ToolSpec> tools)
    {
        public IEnvironment Env { get; } = env;

        public int Task { get; } = task;

        public int Sample { get; } = sample;

        public List<Message> Conversation { get; } = conversation;

        public IReadOnlyList<ToolSpec> Tools { get; } = tools;

        public List<string> Actions { get; } = [];

        public double Return { get; set; }

        public bool Correct { get; set; }

        public bool Done { get; set; }

        public bool Truncated { get; set; }
    }
}
