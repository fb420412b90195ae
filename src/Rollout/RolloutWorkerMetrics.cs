using Prometheus;

namespace K2RL.Rollout;

/// <summary>
/// A rollout worker's Prometheus metrics (prefix <c>k2rl_worker_</c>) in one registry, served by
/// <see cref="K2RL.Common.Metrics.MetricsServer"/> on the worker's <c>--metrics HOST:PORT</c>: work items done, tokens
/// generated and the rate of the last item, the weight version held and how long its sync took.
/// </summary>
public sealed class RolloutWorkerMetrics
{
    private readonly Counter items, tokens, syncs;
    private readonly Gauge tokensPerSecond, weightVersion, syncSeconds;

    public RolloutWorkerMetrics(CollectorRegistry registry)
    {
        var f = Metrics.WithCustomRegistry(registry);
        items = f.CreateCounter("k2rl_worker_items_done_total", "Work items this worker finished and acknowledged since it started.");
        tokens = f.CreateCounter("k2rl_worker_generated_tokens_total", "Tokens this worker generated since it started.");
        syncs = f.CreateCounter("k2rl_worker_weight_syncs_total", "Weight versions this worker took since it started.");
        tokensPerSecond = f.CreateGauge("k2rl_worker_generation_tokens_per_second", "Generated tokens per second over the last work item.");
        weightVersion = f.CreateGauge("k2rl_worker_weight_version", "Policy weight version this worker holds (-1: none yet).");
        syncSeconds = f.CreateGauge("k2rl_worker_weight_sync_seconds", "Time the last weight sync took, from announcement to weights in use.");
        weightVersion.Set(-1);
    }

    /// <summary>
    /// Brings the metrics to a worker's stats snapshot (<see cref="Workers.RolloutWorker.Stats"/>): the counters rise to its
    /// totals, the gauges take its values, and a version not seen before counts as one sync.
    /// </summary>
    public void Observe(Workers.WorkerHeartbeat stats)
    {
        items.IncTo(stats.ItemsDone);
        tokens.IncTo(stats.TokensGenerated);
        tokensPerSecond.Set(stats.TokensPerSecond);
        if (stats.WeightsVersion >= 0 && stats.WeightsVersion != (long)weightVersion.Value)
        {
            syncs.Inc();
            weightVersion.Set(stats.WeightsVersion);
            syncSeconds.Set(stats.LastSyncSeconds);
        }
    }

    /// <summary>One work item finished: <paramref name="generatedTokens"/> tokens in <paramref name="seconds"/>.</summary>
    public void ItemDone(long generatedTokens, double seconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(generatedTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(seconds);
        items.Inc();
        tokens.Inc(generatedTokens);
        tokensPerSecond.Set(seconds > 0 ? generatedTokens / seconds : 0);
    }

    /// <summary>The worker now holds <paramref name="version"/>; taking it took <paramref name="seconds"/>.</summary>
    public void WeightsSynced(long version, double seconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(seconds);
        syncs.Inc();
        weightVersion.Set(version);
        syncSeconds.Set(seconds);
    }
}
