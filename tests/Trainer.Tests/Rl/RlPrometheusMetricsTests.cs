using K2RL.Tests.Shared;
using K2RL.Trainer.Rl;

namespace K2RL.Trainer.Tests.Rl;

/// <summary>The RL job's Prometheus metrics: each iteration field's gauge, the scrape-time state and pool, and promtool's verdict.</summary>
public sealed class RlPrometheusMetricsTests
{
    [Fact]
    public async Task AnIterationsMetricsLineBecomesGaugesThatPassPromtool()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        using var control = new JobControlState();
        control.Report(7, 100, 6, null, null);
        var metrics = new RlPrometheusMetrics(registry, control, new OneQueue());
        string before = await Export(registry);
        Assert.Equal(7, PromTool.Sample(before, "k2rl_rl_iteration"));   // from the control state, before any iteration of this process
        Assert.Equal(1, PromTool.Sample(before, "k2rl_rl_job_state{state=\"running\"}"));
        Assert.Equal(0, PromTool.Sample(before, "k2rl_rl_job_state{state=\"paused\"}"));
        PromTool.CheckMetrics(before);

        var m = new RlMetrics
        {
            Iteration = 8, Version = 7, Temperature = 0.9, RewardMean = 0.25, Accuracy = 0.5, LossRl = -0.1, LossPtx = 2.5, LossCritic = double.NaN,
            LogprobMismatchMean = 1e-6, LogprobMismatchMax = 3e-5, TokensGenerated = 400, GenerateS = 2, ScoreS = 0.5, TrainS = 1, PushS = 0.125,
            OtherS = 0.375, IterationS = 4, PartialPaused = 3,
            Envs = new Dictionary<string, EnvIterationMetrics>
            {
                ["arithmetic"] = new() { Responses = 4, RewardMean = 0.75, Accuracy = 0.75, TruncationRate = 0.25, ResponseTokensMean = 9 },
            },
        };
        metrics.Observe(m);
        control.Report(8, 100, 7, m.ToJson(), null);
        control.Pause();
        string text = await Export(registry);
        PromTool.CheckMetrics(text);
        foreach (var (series, value) in new (string, double)[]
        {
            ("k2rl_rl_iteration", 8), ("k2rl_rl_weight_version", 7), ("k2rl_rl_temperature", 0.9), ("k2rl_rl_reward_mean", 0.25),
            ("k2rl_rl_accuracy_ratio", 0.5), ("k2rl_rl_loss_rl", -0.1), ("k2rl_rl_loss_ptx", 2.5), ("k2rl_rl_logprob_mismatch_max", 3e-5),
            ("k2rl_rl_generated_tokens_total", 400), ("k2rl_rl_generation_tokens_per_second", 200), ("k2rl_rl_weight_push_seconds", 0.125),
            ("k2rl_rl_iteration_seconds", 4), ("k2rl_rl_phase_seconds{phase=\"score\"}", 0.5), ("k2rl_rl_partial_rollouts_paused", 3),
            ("k2rl_rl_env_reward_mean{env=\"arithmetic\"}", 0.75), ("k2rl_rl_env_truncation_ratio{env=\"arithmetic\"}", 0.25),
            ("k2rl_rl_env_responses{env=\"arithmetic\"}", 4), ("k2rl_rl_queue_depth{queue=\"generate\"}", 9), ("k2rl_rl_workers{health=\"healthy\"}", 0),
            ("k2rl_rl_job_state{state=\"paused\"}", 1), ("k2rl_rl_job_state{state=\"running\"}", 0),
        })
        {
            Assert.True(PromTool.Sample(text, series) == value, $"{series}: {PromTool.Sample(text, series)}, expected {value}\n{text}");
        }

        Assert.True(double.IsNaN(PromTool.Sample(text, "k2rl_rl_loss_critic")!.Value));   // no critic training: NaN, as in metrics.jsonl (null)
        metrics.Observe(m with { Envs = new Dictionary<string, EnvIterationMetrics> { ["list_ops"] = new() { Responses = 2, RewardMean = 1 } } });
        text = await Export(registry);
        Assert.Equal(800, PromTool.Sample(text, "k2rl_rl_generated_tokens_total"));
        Assert.Equal(1, PromTool.Sample(text, "k2rl_rl_env_reward_mean{env=\"list_ops\"}"));
        Assert.Equal(0, PromTool.Sample(text, "k2rl_rl_env_responses{env=\"arithmetic\"}"));   // absent this iteration: not its stale figures
        Assert.True(double.IsNaN(PromTool.Sample(text, "k2rl_rl_env_reward_mean{env=\"arithmetic\"}")!.Value));
        PromTool.CheckMetrics(text);
    }

    private static async Task<string> Export(Prometheus.CollectorRegistry registry)
    {
        using var stream = new MemoryStream();
        await registry.CollectAndExportAsTextAsync(stream);
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private sealed class OneQueue : IWorkerPoolStatus
    {
        public Task<WorkerPoolSnapshot> SnapshotAsync(CancellationToken ct) => Task.FromResult(new WorkerPoolSnapshot([], new Dictionary<string, long> { ["generate"] = 9 }));
    }
}
