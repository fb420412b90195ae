using System.Diagnostics;
using System.Text.Json;
using K2RL.Gym;
using K2RL.Model;
using K2RL.Tests.Shared;
using K2RL.Trainer.Rl;

namespace K2RL.Cli.Tests;

/// <summary>
/// Issue 14, item 2, end to end: a Gym server over real sockets serves environments that return NaN rewards, never
/// end an episode, or hang on every step. <c>k2rl gym eval --json</c> (the remotes named in a <c>gym:</c> config) and
/// the RL job both finish, with those episodes failed or truncated; a hung environment costs about one timeout, not one
/// per episode. Wall-clock bounds are loose (2 shared cores): they tell one timeout from N.
/// </summary>
public sealed class MisbehavingEnvironmentIntegrationTests : IAsyncLifetime
{
    private readonly RandomCheckpoint checkpoint = new(
        ModelConfig.Load(ModelCommandInfoTests.Preset("k2-test")) with { VocabSize = 272, MaxPositionEmbeddings = 512 },
        seed: 6, prefix: "k2rl-broken-");

    private BrokenEnvironmentServer server = null!;
    private string gymConfig = "";

    public async Task InitializeAsync()
    {
        server = await BrokenEnvironmentServer.StartAsync();
        gymConfig = Path.Combine(Path.GetTempPath(), $"k2rl-broken-gym-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(gymConfig, server.GymYaml());
    }

    public async Task DisposeAsync()
    {
        await server.DisposeAsync();
        File.Delete(gymConfig);
        checkpoint.Dispose();
    }

    private async Task<JsonElement> EvalJson(string env, params string[] extra)
    {
        string[] args = ["gym", "eval", env, "--checkpoint", checkpoint.Dir, "--max-tokens", "4", "--config", gymConfig, "--json", .. extra];
        var (code, json, err) = await ModelCommandInfoTests.Run(args);
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(json);   // valid JSON: no NaN anywhere
        return doc.RootElement.Clone();
    }

    [Fact]
    public async Task GymEvalCountsNonFiniteRewardsAsFailedEpisodes()
    {
        var root = await EvalJson("nan", "--n", "4");
        Assert.Equal(4, root.GetProperty("failed").GetInt32());
        var reason = Assert.Single(root.GetProperty("failures").EnumerateObject());
        Assert.Contains("non-finite reward (NaN)", reason.Name);
        Assert.Equal(4, reason.Value.GetInt32());
        Assert.Equal(0.0, root.GetProperty("mean_return").GetDouble());
        Assert.Equal(0.0, root.GetProperty("accuracy").GetDouble());
    }

    [Fact]
    public async Task GymEvalTruncatesEpisodesThatNeverEndAtTheTurnCap()
    {
        var root = await EvalJson("endless", "--n", "4", "--max-turns", "3");
        Assert.Equal(0, root.GetProperty("failed").GetInt32());
        Assert.Equal(4, root.GetProperty("truncated").GetInt32());
        Assert.Equal(12, root.GetProperty("turns").GetInt64());
        Assert.Equal(0.75, root.GetProperty("mean_return").GetDouble(), 9);
    }

    [Fact]
    public async Task GymEvalOnAHungServerTakesAboutOneTimeout()
    {
        const int n = 8;
        const double timeout = 2;
        var watch = Stopwatch.StartNew();
        var root = await EvalJson("hang", "--n", n.ToString(), "--step-timeout", "2");
        Assert.True(watch.Elapsed.TotalSeconds < n * timeout / 2, $"{watch.Elapsed} for {n} hung episodes of a {timeout} s timeout");
        Assert.Equal(n, root.GetProperty("failed").GetInt32());
        Assert.All(root.GetProperty("failures").EnumerateObject(), f => Assert.Contains("'hang' step 1 timed out after 2 s", f.Name));
    }

    [Fact]
    public async Task GymEvalEpisodeTimeoutBoundsAHungStepToo()
    {
        var root = await EvalJson("hang", "--n", "2", "--episode-timeout", "1.5");
        Assert.Equal(2, root.GetProperty("failed").GetInt32());
        Assert.Contains("1.5 s of environment time ran out", root.GetProperty("failures").EnumerateObject().First().Name);
    }

    [Fact]
    public async Task NonFiniteRlStepsAreSkippedAndSeveralInARowStopTheJobWithItsCheckpointIntact()
    {
        var registry = server.ClientRegistry();
        string dir = Path.Combine(Path.GetTempPath(), "k2rl-huge-rl-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            string job = $"""
                init_from: {checkpoint.Dir}
                iterations: 6
                max_bad_steps: 2
                prompts_per_iteration: 2
                samples_per_prompt: 2
                envs:
                  huge: {"{"}max_response_tokens: 4, reward: verifier{"}"}
                ptx:
                  lambda: 0
                critic:
                  calibration_pairs: 0
                eval:
                  every: 0
                checkpoint:
                  every_iterations: 1
                """;
            var config = RlLearningTests.ParseJob(job, dir, registry);
            string run = Path.Combine(dir, "run");
            var (result, observer) = await RlLearningTests.RunInProcess(config, run, registry);

            Assert.Equal(RlStopReason.TooManyBadSteps, result.Reason);
            Assert.Equal(2, result.Iteration);
            Assert.Equal(2, observer.Metrics.Count);
            Assert.All(observer.Metrics, m => Assert.Equal(0, m.Version));   // no update was applied or pushed
            Assert.DoesNotContain("NaN", File.ReadAllText(Path.Combine(run, "metrics.jsonl")));
            // The checkpoint the job stopped at holds the base's weights exactly, and it loads.
            string latest = Assert.IsType<string>(result.Checkpoint);
            Assert.Null(K2RL.Model.IO.CheckpointPath.Problem(latest));
            var loaded = K2RL.Model.IO.ModelCheckpoint.Load(latest, null, null);
            var base0 = K2RL.Model.IO.ModelCheckpoint.Load(checkpoint.Dir, null, null);
            Assert.Equal(base0.Parameters, loaded.Parameters);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task TheRlJobCompletesWithTheMisbehavingEpisodesFailedOrTruncated()
    {
        var registry = server.ClientRegistry();
        string dir = Path.Combine(Path.GetTempPath(), "k2rl-broken-rl-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            string job = $"""
                init_from: {checkpoint.Dir}
                iterations: 2
                prompts_per_iteration: 8
                samples_per_prompt: 2
                envs:
                  arithmetic: {"{"}max_response_tokens: 6{"}"}
                  nan: {"{"}max_response_tokens: 6, reward: verifier{"}"}
                  endless: {"{"}max_response_tokens: 12, max_turns: 2, reward: verifier{"}"}
                  hang: {"{"}max_response_tokens: 6, reward: verifier, episode_timeout_s: 1.5{"}"}
                budget:
                  failure_reward: -1
                ptx:
                  lambda: 0
                rollout:
                  step_timeout_s: 20
                critic:
                  calibration_pairs: 0
                eval:
                  every: 0
                """;
            var config = RlLearningTests.ParseJob(job, dir, registry);
            Assert.Equal(1.5, config.Envs.Single(e => e.Name == "hang").EpisodeTimeoutSeconds);
            var watch = Stopwatch.StartNew();
            var (result, observer) = await RlLearningTests.RunInProcess(config, Path.Combine(dir, "run"), registry);

            Assert.Equal(RlStopReason.Completed, result.Reason);
            Assert.Equal(2, observer.Metrics.Count);
            var hang = observer.Metrics.Select(m => m.Envs.GetValueOrDefault("hang")).Where(e => e is not null).ToList();
            var nan = observer.Metrics.Select(m => m.Envs.GetValueOrDefault("nan")).Where(e => e is not null).ToList();
            var endless = observer.Metrics.Select(m => m.Envs.GetValueOrDefault("endless")).Where(e => e is not null).ToList();
            Assert.NotEmpty(hang.Concat(nan).Concat(endless));
            Assert.All(hang.Concat(nan), e => Assert.Equal(e!.Responses, e.Failed));
            Assert.All(hang.Concat(nan), e => Assert.Equal(-1, e!.RewardMean, 9));   // the failure reward, never NaN
            Assert.All(endless, e => Assert.Equal(0, e!.Failed));
            Assert.All(endless, e => Assert.Equal(1, e!.TruncationRate, 9));
            Assert.All(observer.Metrics, m => Assert.True(double.IsFinite(m.RewardMean), m.ToJson()));
            // each iteration's hung episodes cost about one 1.5 s episode timeout, not the 20 s step timeout or one per episode
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(60), watch.Elapsed.ToString());
            Assert.DoesNotContain("NaN", File.ReadAllText(Path.Combine(dir, "run", "metrics.jsonl")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
