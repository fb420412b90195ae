using System.Diagnostics;
using System.Text.Json;
using K2RL.Common.Chat;
using K2RL.Gym.Eval;
using K2RL.Gym.Tasks;
using K2RL.Tests.Shared;

namespace K2RL.Gym.Tests;

/// <summary>
/// Issue 14, item 2: a remote environment that misbehaves (NaN rewards, episodes that never end, steps that hang),
/// served by a real Gym server over real sockets, is contained by the evaluator's <see cref="GuardedEnvironment"/>
/// and its concurrent episodes. Wall-clock bounds are loose (a shared, loaded machine): they tell one timeout from N.
/// </summary>
public sealed class EpisodeLimitsIntegrationTests : IAsyncLifetime
{
    private BrokenEnvironmentServer server = null!;
    private GymRegistry registry = null!;

    public async Task InitializeAsync()
    {
        server = await BrokenEnvironmentServer.StartAsync();
        registry = server.ClientRegistry();
    }

    public async Task DisposeAsync() => await server.DisposeAsync();

    private static readonly ScriptedPolicy Chatty = new(_ => "hello");

    [Fact]
    public async Task ANonFiniteRewardFailsTheEpisodeAndTheReportIsValidJson()
    {
        var report = await Evaluator.RunAsync("nan", () => registry.CreateEnvironment("nan"), Chatty, new EvalOptions { N = 6 });

        Assert.Equal(6, report.Failed);
        var (reason, count) = Assert.Single(report.Failures);
        Assert.Equal(6, count);
        Assert.Contains("'nan' step 1 returned a non-finite reward (NaN)", reason);
        Assert.Equal(0, report.MeanReturn);   // the failed step's reward is not counted
        Assert.Equal(0, report.Accuracy);
        string json = report.ToJson();
        Assert.DoesNotContain(":NaN", json);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal(6, doc.RootElement.GetProperty("failed").GetInt32());
        Assert.Equal(6, doc.RootElement.GetProperty("failures").GetProperty(reason).GetInt32());
    }

    [Fact]
    public async Task AnEpisodeThatNeverEndsIsTruncatedAtTheTurnCap()
    {
        var report = await Evaluator.RunAsync("endless", () => registry.CreateEnvironment("endless"), Chatty,
            new EvalOptions { N = 4, Limits = new EpisodeLimits { MaxTurns = 5 } });

        Assert.Equal(0, report.Failed);
        Assert.Equal(4, report.Truncated);
        Assert.All(report.Episodes, e => Assert.Equal(5, e.Actions.Count));
        Assert.Equal(5 * 0.25, report.MeanReturn, 9);
    }

    [Fact]
    public async Task StepsThatHangCostOneTimeoutNotOnePerEpisode()
    {
        const int n = 8;
        var timeout = TimeSpan.FromSeconds(2);
        var watch = Stopwatch.StartNew();
        var report = await Evaluator.RunAsync("hang", () => registry.CreateEnvironment("hang"), Chatty,
            new EvalOptions { N = n, Limits = new EpisodeLimits { CallTimeout = timeout } });

        Assert.True(watch.Elapsed < n * timeout / 2, $"{watch.Elapsed} for {n} hung episodes of a {timeout} timeout");
        Assert.Equal(n, report.Failed);
        Assert.All(report.Failures.Keys, r => Assert.Contains("'hang' step 1 timed out after 2 s", r));
        using var doc = JsonDocument.Parse(report.ToJson());
        Assert.Equal(n, doc.RootElement.GetProperty("failed").GetInt32());
    }

    [Fact]
    public async Task OneHungEnvironmentDoesNotHoldTheOtherEpisodesBatches()
    {
        // The first episode admitted is the hung remote; the other 11 are arithmetic, 4 in flight at a time.
        var timeout = TimeSpan.FromSeconds(5);
        var local = GymRegistry.CreateDefault();
        int created = 0;
        var watch = Stopwatch.StartNew();
        var answered = new List<(int Task, TimeSpan At)>();
        var policy = new ScriptedPolicy(req =>
        {
            lock (answered)
            {
                answered.Add((req.Task, watch.Elapsed));
            }

            return new ArithmeticGenerator().Generate(req.Task, Split.HeldOut, 1).Solution;
        });
        var report = await Evaluator.RunAsync("arithmetic",
            () => Interlocked.Increment(ref created) == 1 ? registry.CreateEnvironment("hang") : local.CreateEnvironment("arithmetic"), policy,
            new EvalOptions { N = 12, Concurrency = 4, Limits = new EpisodeLimits { CallTimeout = timeout } });

        Assert.Equal(1, report.Failed);
        Assert.Equal(11 / 12.0, report.Accuracy, 9);
        Assert.False(report.Episodes[0].Correct);
        Assert.NotNull(report.Episodes[0].Failure);
        // Every other episode had its action while the hung step was still waiting out its timeout.
        var others = answered.Where(a => a.Task != 0).ToList();
        Assert.Equal(11, others.Count);
        Assert.True(others.Max(a => a.At) < timeout / 2, $"the last other episode was answered at {others.Max(a => a.At)}");
        Assert.True(watch.Elapsed < 2 * timeout, watch.Elapsed.ToString());
    }

    [Fact]
    public async Task AnEnvironmentSlowOnEveryStepRunsOutOfEpisodeTime()
    {
        await using var env = new GuardedEnvironment(new SlowEndless(TimeSpan.FromMilliseconds(400)),
            new EpisodeLimits { MaxTurns = 1000, EpisodeTimeout = TimeSpan.FromSeconds(1.5) });
        await env.ResetAsync(1);
        var watch = Stopwatch.StartNew();
        StepResult step;
        do
        {
            step = await env.StepAsync("more");
        }
        while (!step.Done);

        Assert.True(step.Failed);
        Assert.Contains("'slow' step", step.Info.Failure);
        Assert.Contains("1.5 s of environment time ran out", step.Info.Failure);
        Assert.InRange(env.Turns, 2, 5);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), watch.Elapsed.ToString());
        Assert.True((await env.StepAsync("again")).Failed);   // and stays failed
    }

    [Fact]
    public async Task AThrowingResetFailsItsEpisodeNotTheEvaluation()
    {
        var report = await Evaluator.RunAsync("slow", () => new SlowEndless(TimeSpan.Zero, throwOnReset: true), Chatty, new EvalOptions { N = 3 });
        Assert.Equal(3, report.Failed);
        Assert.Contains("'slow' reset threw InvalidOperationException: no task today", report.Failures.Keys.Single());
    }

    /// <summary>An in-process environment whose every step takes <paramref name="delay"/> and never ends the episode.</summary>
    private sealed class SlowEndless(TimeSpan delay, bool throwOnReset = false) : IEnvironment
    {
        public string Name => "slow";

        public ValueTask<Observation> ResetAsync(long seed, ResetOptions? options = null, CancellationToken ct = default) =>
            throwOnReset ? throw new InvalidOperationException("no task today") : ValueTask.FromResult(Observation.Of(Message.UserText("go")));

        public async ValueTask<StepResult> StepAsync(string action, CancellationToken ct = default)
        {
            Thread.Sleep(delay);   // blocks its thread, as a badly written environment would
            await Task.Yield();
            return new StepResult(Observation.Empty, 0, false, false, StepInfo.None);
        }

        public ValueTask<byte[]> SnapshotAsync(CancellationToken ct = default) => ValueTask.FromResult(Array.Empty<byte>());

        public ValueTask RestoreAsync(ReadOnlyMemory<byte> state, CancellationToken ct = default) => ValueTask.CompletedTask;

        public ValueTask CloseAsync() => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
