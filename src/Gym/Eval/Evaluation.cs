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

    /// <summary>Turn cap, call timeout and environment time of each episode (<see cref="GuardedEnvironment"/>).</summary>
    public EpisodeLimits Limits { get; init; } = new();

    /// <summary>Episodes in flight at once; their turns share the policy's batches.</summary>
    public int Concurrency { get; init; } = 64;
}

/// <summary>
/// The result of an evaluation: accuracy (fraction of all samples judged correct), pass@k (unbiased estimator of
/// Chen et al. 2021 from n samples per task), mean episode return, and the episodes whose environment failed (threw,
/// timed out, gave a non-finite reward: counted as not correct, their return the finite part before the failure).
/// <see cref="ToJson"/> writes <c>{"env", "n", "accuracy", "pass_at_k": {"1": .., "4": ..}, ..., "failed", "failures": {reason: count}}</c>.
/// </summary>
public sealed record EvalReport(string Env, int N, int SamplesPerTask, double Accuracy,
    IReadOnlyDictionary<int, double> PassAtK, double MeanReturn, int Truncated)
{
    /// <summary>Every episode, in (task, sample) order (not in <see cref="ToJson"/>).</summary>
    public IReadOnlyList<EpisodeOutcome> Episodes { get; init; } = [];

    /// <summary>Episodes whose environment failed.</summary>
    public int Failed => Episodes.Count(e => e.Failure is not null);

    /// <summary>Each distinct failure reason and how many episodes it ended.</summary>
    public IReadOnlyDictionary<string, int> Failures => Episodes.Where(e => e.Failure is not null)
        .GroupBy(e => e.Failure!, StringComparer.Ordinal).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal)
        .ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);

    public string ToJson() => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["env"] = Env,
        ["n"] = N,
        ["samples_per_task"] = SamplesPerTask,
        ["accuracy"] = Finite(Accuracy),
        ["pass_at_k"] = PassAtK.ToDictionary(kv => kv.Key.ToString(System.Globalization.CultureInfo.InvariantCulture), kv => Finite(kv.Value)),
        ["mean_return"] = Finite(MeanReturn),
        ["truncated"] = Truncated,
        ["failed"] = Failed,
        ["failures"] = Failures,
    });

    /// <summary>JSON has no NaN or infinity: such a value is written as null.</summary>
    private static double? Finite(double v) => double.IsFinite(v) ? v : null;
}

/// <summary>One evaluated episode: whether it was judged correct, its return, the policy's actions in turn order, and why its environment failed (null when it did not).</summary>
public sealed record EpisodeOutcome(int Task, int Sample, bool Correct, double Return, bool Truncated, IReadOnlyList<string> Actions)
{
    public string? Failure { get; init; }

    /// <summary>The whole episode: the environment's messages and the policy's actions, in order.</summary>
    public IReadOnlyList<Message> Conversation { get; init; } = [];
}

/// <summary>
/// Runs a policy over the held-out split of an environment. Up to <see cref="EvalOptions.Concurrency"/> episodes are in
/// flight, each behind a <see cref="GuardedEnvironment"/>; the turns of every episode waiting for an action go to the
/// policy in one batch. Environment calls run concurrently and do not hold the batch: once one episode waits for an
/// action, the others' calls get <see cref="StragglerWait"/> to join it, then the batch goes without them. So an
/// environment that hangs costs its episodes one timeout, while the rest go on.
/// </summary>
public static class Evaluator
{
    /// <summary>How long a batch waits for environment calls still running before it goes without them.</summary>
    public static readonly TimeSpan StragglerWait = TimeSpan.FromMilliseconds(250);

    public static async Task<EvalReport> RunAsync(string envName, Func<IEnvironment> createEnvironment, IPolicy policy,
        EvalOptions options, CancellationToken ct = default)
    {
        if (options.Limits.Problem() is { } problem)
        {
            throw new ArgumentException(problem, nameof(options));
        }

        int n = options.N, k = Math.Max(1, options.SamplesPerTask);
        var episodes = new List<Episode>(n * k);
        for (int t = 0; t < n; t++)
        {
            for (int s = 0; s < k; s++)
            {
                episodes.Add(new Episode(t, s));
            }
        }

        var closing = new List<Task>();
        try
        {
            await PlayAsync(episodes, () => new GuardedEnvironment(createEnvironment(), options.Limits, envName), policy, options, closing, ct);
        }
        finally
        {
            closing.AddRange(episodes.Where(e => e.Env is not null).Select(e => e.Env!.CloseAsync().AsTask()));
            await Task.WhenAll(closing);
        }

        return Report(envName, n, k, episodes);
    }

    /// <summary>The scheduler: admits episodes up to the concurrency, batches those waiting for an action, starts their steps.</summary>
    private static async Task PlayAsync(List<Episode> episodes, Func<GuardedEnvironment> createEnvironment, IPolicy policy, EvalOptions options,
        List<Task> closing, CancellationToken ct)
    {
        var queue = new Queue<Episode>(episodes);
        var running = new List<Episode>();
        int concurrency = Math.Max(1, options.Concurrency);
        long? readySince = null;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            foreach (var e in running.Where(e => e.Pending is { IsCompleted: true }).ToList())
            {
                await e.Pending!;   // rethrows the caller's cancellation
                e.Pending = null;
                if (e.Done)
                {
                    running.Remove(e);
                    closing.Add(e.Env is { } env ? env.CloseAsync().AsTask() : Task.CompletedTask);
                    e.Env = null;
                }
            }

            while (running.Count < concurrency && queue.TryDequeue(out var next))
            {
                running.Add(next);
                next.Pending = StartAsync(next, createEnvironment, options, ct);
            }

            if (running.Count == 0)
            {
                return;
            }

            var inEnv = running.Where(e => e.Pending is not null).Select(e => e.Pending!).ToList();
            var ready = running.Where(e => e.Pending is null).ToList();
            if (ready.Count == 0)
            {
                readySince = null;
                await Task.WhenAny(inEnv);
                continue;
            }

            readySince ??= System.Diagnostics.Stopwatch.GetTimestamp();
            var waited = System.Diagnostics.Stopwatch.GetElapsedTime(readySince.Value);
            if (inEnv.Count > 0 && waited < StragglerWait)
            {
                await Task.WhenAny(Task.WhenAll(inEnv), Task.Delay(StragglerWait - waited, ct));
                continue;
            }

            readySince = null;
            var actions = await policy.GenerateAsync(ready.Select(e => new PolicyRequest(e.Conversation, e.Tools, e.Task, e.Sample)).ToList(), ct);
            for (int i = 0; i < ready.Count; i++)
            {
                ready[i].Pending = StepAsync(ready[i], i < actions.Count ? actions[i] : "", ct);
            }
        }
    }

    private static async Task StartAsync(Episode e, Func<GuardedEnvironment> createEnvironment, EvalOptions options, CancellationToken ct)
    {
        try
        {
            e.Env = createEnvironment();
            var obs = await e.Env.ResetAsync(options.SeedBase + e.Task, new ResetOptions { Split = options.Split, Difficulty = options.Difficulty }, ct);
            e.Conversation.AddRange(obs.Messages);
            e.Tools = obs.Tools;
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            e.Fail(ex is EnvironmentFailedException ? ex.Message : $"creating environment failed: {ex.GetType().Name}: {ex.Message}");
        }
    }

    // Deliberately a second episode step beside Rollout's EpisodeRunner (the RL job's): this one plays any IPolicy at the
    // text level (remote and scripted policies too), that one holds token ids, per-token versions and log-probs and
    // pauses partial rollouts. Both apply a step the same way: fail on a failed step, append the observation, add the
    // reward, keep the last verdict.
    private static async Task StepAsync(Episode e, string action, CancellationToken ct)
    {
        var step = await e.Env!.StepAsync(action, ct);
        e.Actions.Add(action);
        e.Conversation.Add(Message.AssistantText(action));
        if (step.Failed)
        {
            e.Fail(step.Info.Failure!);
            return;
        }

        e.Conversation.AddRange(step.Observation.Messages);
        e.Return += step.Reward;
        e.Correct = step.Info.Correct ?? e.Correct;
        e.Done = step.Done;
        e.Truncated = step.Truncated;
    }

    private static EvalReport Report(string envName, int n, int k, List<Episode> episodes)
    {
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
            Episodes = episodes.Select(e => new EpisodeOutcome(e.Task, e.Sample, e.Correct, e.Return, e.Truncated, e.Actions)
            {
                Failure = e.Failure,
                Conversation = e.Conversation,
            }).ToList(),
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

    private sealed class Episode(int task, int sample)
    {
        public GuardedEnvironment? Env { get; set; }

        /// <summary>The environment call in flight (reset or step), or null while the episode waits for an action.</summary>
        public Task? Pending { get; set; }

        public int Task { get; } = task;

        public int Sample { get; } = sample;

        public List<Message> Conversation { get; } = [];

        public IReadOnlyList<ToolSpec> Tools { get; set; } = [];

        public List<string> Actions { get; } = [];

        public double Return { get; set; }

        public bool Correct { get; set; }

        public bool Done { get; set; }

        public bool Truncated { get; set; }

        public string? Failure { get; private set; }

        public void Fail(string reason)
        {
            Failure ??= reason;
            Correct = false;
            Done = true;
        }
    }
}
