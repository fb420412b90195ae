using K2RL.Tests.Shared;

namespace K2RL.Rollout.Tests;

/// <summary>The rollout worker's Prometheus metrics by themselves: what each call sets, and promtool's verdict on the text.</summary>
public sealed class RolloutWorkerMetricsTests
{
    [Fact]
    public async Task ItemsTokensAndWeightSyncsAreExportedAndPassPromtool()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var metrics = new RolloutWorkerMetrics(registry);
        Assert.Equal(-1, PromTool.Sample(await Export(registry), "k2rl_worker_weight_version"));   // no weights yet

        metrics.WeightsSynced(version: 3, seconds: 0.25);
        metrics.ItemDone(generatedTokens: 100, seconds: 2);
        metrics.ItemDone(generatedTokens: 30, seconds: 0.5);
        metrics.ItemDone(generatedTokens: 0, seconds: 0);   // an item that sampled nothing (its env failed at once)
        string text = await Export(registry);
        Assert.Equal(3, PromTool.Sample(text, "k2rl_worker_items_done_total"));
        Assert.Equal(130, PromTool.Sample(text, "k2rl_worker_generated_tokens_total"));
        Assert.Equal(0, PromTool.Sample(text, "k2rl_worker_generation_tokens_per_second"));
        Assert.Equal(3, PromTool.Sample(text, "k2rl_worker_weight_version"));
        Assert.Equal(0.25, PromTool.Sample(text, "k2rl_worker_weight_sync_seconds"));
        Assert.Equal(1, PromTool.Sample(text, "k2rl_worker_weight_syncs_total"));
        PromTool.CheckMetrics(text);

        metrics.ItemDone(generatedTokens: 60, seconds: 1.5);
        Assert.Equal(40, PromTool.Sample(await Export(registry), "k2rl_worker_generation_tokens_per_second"));
        Assert.Throws<ArgumentOutOfRangeException>(() => metrics.ItemDone(-1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => metrics.WeightsSynced(4, -0.1));
    }

    [Fact]
    public async Task AWorkersStatsSnapshotsRaiseTheCountersAndCountEachNewVersionOnce()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var metrics = new RolloutWorkerMetrics(registry);
        metrics.Observe(new Workers.WorkerHeartbeat { Id = "w" });   // no weights, nothing done
        string text = await Export(registry);
        Assert.Equal((-1, 0), (PromTool.Sample(text, "k2rl_worker_weight_version"), PromTool.Sample(text, "k2rl_worker_weight_syncs_total")));

        var s = new Workers.WorkerHeartbeat { Id = "w", WeightsVersion = 2, LastSyncSeconds = 0.5, ItemsDone = 4, TokensGenerated = 90, TokensPerSecond = 30 };
        metrics.Observe(s);
        metrics.Observe(s);   // the same snapshot again: nothing more
        metrics.Observe(s with { WeightsVersion = 3, LastSyncSeconds = 0.125, ItemsDone = 7, TokensGenerated = 150 });
        text = await Export(registry);
        Assert.Equal(7, PromTool.Sample(text, "k2rl_worker_items_done_total"));
        Assert.Equal(150, PromTool.Sample(text, "k2rl_worker_generated_tokens_total"));
        Assert.Equal(30, PromTool.Sample(text, "k2rl_worker_generation_tokens_per_second"));
        Assert.Equal(3, PromTool.Sample(text, "k2rl_worker_weight_version"));
        Assert.Equal(0.125, PromTool.Sample(text, "k2rl_worker_weight_sync_seconds"));
        Assert.Equal(2, PromTool.Sample(text, "k2rl_worker_weight_syncs_total"));
        PromTool.CheckMetrics(text);
    }

    private static async Task<string> Export(Prometheus.CollectorRegistry registry)
    {
        using var stream = new MemoryStream();
        await registry.CollectAndExportAsTextAsync(stream);
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }
}
