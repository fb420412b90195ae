using K2RL.Common.Chat;
using K2RL.Gym;
using K2RL.Model;
using K2RL.Trainer.Rl;

namespace K2RL.Cli.Tests;

/// <summary>
/// The whole loop learns: on a toy environment with a dense reward (the share of 'a' characters in the reply), RL from a
/// random tiny base raises the reward. A sign error in the objective, a misaligned target, a push that never reaches
/// the engine, or PTX swamping the RL gradient all fail it.
/// </summary>
public sealed class RlLearningTests
{
    private sealed class SayAEnvironment() : EnvironmentBase("say_a")
    {
        protected override ValueTask<Observation> OnResetAsync(CancellationToken ct) =>
            ValueTask.FromResult(Observation.Of(Message.UserText("Say a.")));

        protected override ValueTask<StepResult> OnStepAsync(string action, CancellationToken ct)
        {
            double share = action.Length == 0 ? 0 : action.Count(c => c == 'a') / (double)action.Length;
            return ValueTask.FromResult(new StepResult(Observation.Empty, share, true, false, new StepInfo { Correct = share >= 0.5 }));
        }

        protected override void WriteState(SnapshotWriter w)
        {
        }

        protected override void ReadState(SnapshotReader r)
        {
        }
    }

    /// <summary>Reward 1 when the reply's first character has an even code, else 0, whatever the text (a direct
    /// <see cref="IEnvironment"/>, without <see cref="EnvironmentBase"/>'s refusal of text that is not well formed): a
    /// coin flip for a random base, so some groups get equal rewards and some do not.</summary>
    private sealed class EvenStartEnvironment : IEnvironment
    {
        public string Name => "even_start";

        public ValueTask<Observation> ResetAsync(long seed, ResetOptions? options = null, CancellationToken ct = default) =>
            ValueTask.FromResult(Observation.Of(Message.UserText("Start evenly.")));

        public ValueTask<StepResult> StepAsync(string action, CancellationToken ct = default)
        {
            bool even = action.Length > 0 && action[0] % 2 == 0;
            return ValueTask.FromResult(new StepResult(Observation.Empty, even ? 1 : 0, true, false, new StepInfo { Correct = even }));
        }

        public ValueTask<byte[]> SnapshotAsync(CancellationToken ct = default) => ValueTask.FromResult(Array.Empty<byte>());

        public ValueTask RestoreAsync(ReadOnlyMemory<byte> state, CancellationToken ct = default) => ValueTask.CompletedTask;

        public ValueTask CloseAsync() => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>
    /// Throws on every second task seed and hangs (past the job's step timeout) on every third, when the episode starts
    /// (a random base's replies are mostly malformed text, which the base class refuses before a step would reach the env).
    /// </summary>
    private sealed class FlakyEnvironment() : EnvironmentBase("flaky")
    {
        protected override async ValueTask<Observation> OnResetAsync(CancellationToken ct)
        {
            if (Seed % 3 == 0)
            {
                await Task.Delay(TimeSpan.FromSeconds(30), ct);
            }

            if (Seed % 2 == 0)
            {
                throw new InvalidOperationException("the environment broke");
            }

            return Observation.Of(Message.UserText("Say anything."));
        }

        protected override ValueTask<StepResult> OnStepAsync(string action, CancellationToken ct) =>
            ValueTask.FromResult(new StepResult(Observation.Empty, 1, true, false, new StepInfo { Correct = true }));

        protected override void WriteState(SnapshotWriter w)
        {
        }

        protected override void ReadState(SnapshotReader r)
        {
        }
    }

    [Fact]
    public async Task AnEnvironmentThatThrowsOrHangsFailsItsEpisodesAndTheJobGoesOn()
    {
        using var checkpoint = new RandomCheckpoint(
            ModelConfig.Load(ModelCommandInfoTests.Preset("k2-test")) with { VocabSize = 272, MaxPositionEmbeddings = 128 }, seed: 9, prefix: "k2rl-rlflaky-");
        string dir = Path.Combine(Path.GetTempPath(), "k2rl-rlflaky-run-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            var registry = GymRegistry.CreateDefault().AddEnvironment("flaky", "throws or hangs on some tasks", _ => new FlakyEnvironment());
            string job = $"""
                init_from: {checkpoint.Dir}
                iterations: 3
                prompts_per_iteration: 6
                samples_per_prompt: 2
                envs:
                  flaky: {"{"}max_response_tokens: 4{"}"}
                budget:
                  failure_reward: -1
                ptx:
                  lambda: 0
                rollout:
                  step_timeout_s: 0.5
                critic:
                  calibration_pairs: 0
                eval:
                  every: 0
                """;
            var config = ParseJob(job, dir, registry);
            var (result, observer) = await RunInProcess(config, Path.Combine(dir, "run"), registry);

            Assert.Equal(RlStopReason.Completed, result.Reason);
            Assert.Equal(3, observer.Metrics.Count);
            var env = observer.Metrics.Select(m => m.Envs["flaky"]).ToList();
            Assert.All(env, e => Assert.Equal(12, e.Responses));
            int failed = env.Sum(e => e.Failed);
            Assert.InRange(failed, 1, 35);   // the seeds are random: some tasks fail, some do not
            // a failed episode scores the failure reward −1; the others score at most 1 (a malformed reply is penalized)
            Assert.All(env, e => Assert.True(e.RewardMean <= (e.Responses - 2.0 * e.Failed) / e.Responses + 1e-9, $"{e.RewardMean} with {e.Failed} failed"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>The metrics of every iteration, as the job reports them.</summary>
    /// <summary>The job text as `k2rl rl` parses it, with <paramref name="registry"/>'s environments known.</summary>
    internal static RlJobConfig ParseJob(string job, string dir, GymRegistry registry) =>
        RlJobConfig.Parse(job, Path.Combine(dir, "job.yaml"), registry.Environments.Select(e => e.Name).ToArray(), SyntheticCorpus.CreateDefault().Kinds);

    /// <summary>The RL job in this process, from scratch to its end, with every iteration's metrics collected.</summary>
    internal static async Task<(RlResult Result, Collect Observer)> RunInProcess(RlJobConfig config, string runDir, GymRegistry registry)
    {
        var observer = new Collect();
        using var rl = new RlJob(config, runDir, registry);
        var result = await rl.TrainAsync(resume: false, maxIterations: null, CancellationToken.None, observer);
        return (result, observer);
    }

    internal sealed class Collect : IRlObserver
    {
        public List<RlMetrics> Metrics { get; } = [];

        public void OnStart(long firstIteration, long totalIterations)
        {
        }

        public void OnIteration(RlMetrics metrics, long totalIterations) => Metrics.Add(metrics);
    }

    [Fact]
    public async Task LeavingOutGroupsWithEqualRewardsTrainsTheSameAsTrainingThem()
    {
        // objective.skip_uniform_groups (the default) against false: with one mini-batch a group with no advantage adds
        // only rounding to the gradient, so from the same weights the step sees the same losses and gradient. (Not
        // beyond the first update: the expert-bias rule counts the loads of the tokens trained on, so the biases after
        // it differ a little.)
        using var checkpoint = new RandomCheckpoint(
            ModelConfig.Load(ModelCommandInfoTests.Preset("k2-test")) with { VocabSize = 272, MaxPositionEmbeddings = 128 }, seed: 9, prefix: "k2rl-rlskip-");
        string dir = Path.Combine(Path.GetTempPath(), "k2rl-rlskip-run-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            var registry = GymRegistry.CreateDefault().AddEnvironment("even_start", "reward: an even first character", _ => new EvenStartEnvironment());
            RlMetrics Run(bool skip)
            {
                string job = $"""
                    init_from: {checkpoint.Dir}
                    seed: 5
                    iterations: 1
                    prompts_per_iteration: 8
                    samples_per_prompt: 4
                    envs:
                      even_start: {"{"}max_response_tokens: 6{"}"}
                    objective:
                      skip_uniform_groups: {(skip ? "true" : "false")}
                      micro_batch_rows: 5
                    budget:
                      truncation_reward: 1   # min(r, 1) = r: a truncated reply keeps its reward
                    ptx:
                      lambda: 0.1
                      batch_size: 2
                      seq_len: 32
                    critic:
                      calibration_pairs: 0
                    eval:
                      every: 0
                    """;
                var config = ParseJob(job, dir, registry);
                return Assert.Single(RunInProcess(config, Path.Combine(dir, skip ? "skip" : "all"), registry).GetAwaiter().GetResult().Observer.Metrics);
            }

            var a = Run(skip: true);
            var b = Run(skip: false);
            Assert.True(a.UniformGroups >= 1 && a.UniformGroups < a.Groups, $"{a.UniformGroups} of {a.Groups} groups with equal rewards (reward mean {a.RewardMean}, {System.Text.Json.JsonSerializer.Serialize(a.Envs)}): some must be left out and some trained, else the comparison shows nothing");
            Assert.Equal(0, b.UniformGroups);
            Assert.Equal(b.RewardMean, a.RewardMean);   // the same responses
            Assert.Equal(b.LossRl, a.LossRl, 1e-6);
            Assert.Equal(b.LossPtx, a.LossPtx, 1e-4 * b.LossPtx);   // the step's loss less the RL part: other float sums
            Assert.True(Math.Abs(a.GradNorm - b.GradNorm) <= 1e-5 * b.GradNorm, $"grad_norm {a.GradNorm} with the skip, {b.GradNorm} without");
            Assert.True(a.LogprobMismatchMean <= 1e-5, $"mismatch {a.LogprobMismatchMean} over the trained groups");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task RlRaisesADenseToyRewardFromARandomBase()
    {
        using var checkpoint = new RandomCheckpoint(
            ModelConfig.Load(ModelCommandInfoTests.Preset("k2-test")) with { VocabSize = 272, MaxPositionEmbeddings = 128 }, seed: 9, prefix: "k2rl-rllearn-");
        string dir = Path.Combine(Path.GetTempPath(), "k2rl-rllearn-run-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            var registry = GymRegistry.CreateDefault().AddEnvironment("say_a", "reward: the share of 'a' in the reply", _ => new SayAEnvironment());
            string job = $"""
                init_from: {checkpoint.Dir}
                seed: 5
                iterations: 30
                prompts_per_iteration: 4
                samples_per_prompt: 8
                envs:
                  say_a: {"{"}max_response_tokens: 8{"}"}
                ptx:
                  lambda: 0
                temperature: {"{"}kind: constant, start: 1.0{"}"}
                critic:
                  calibration_pairs: 0
                optimizer:
                  lr: 0.02
                eval:
                  every: 0
                checkpoint:
                  every_iterations: 1000
                """;
            var config = ParseJob(job, dir, registry);
            var (_, observer) = await RunInProcess(config, Path.Combine(dir, "run"), registry);

            double first = observer.Metrics.Take(5).Average(m => m.RewardMean);
            double last = observer.Metrics.TakeLast(5).Average(m => m.RewardMean);
            Assert.True(last > first + 0.2, $"mean reward of the first 5 iterations {first:F3}, of the last 5 {last:F3}");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
