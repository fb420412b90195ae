using System.Diagnostics;
using K2RL.Common.Metrics;
using K2RL.Common.Redis;

namespace K2RL.Rollout.Workers;

/// <summary>The queue's added latency per item, in milliseconds (median and 90th percentile of <see cref="Items"/> round trips).</summary>
public sealed record QueueLatency(int Items, double MedianMs, double P90Ms, double MaxMs);

/// <summary>
/// What the Redis queue adds to one work item: a producer enqueues one item and waits (woken by the queue's pub/sub
/// event, polling as the fallback, as the trainer does) until it collects the result; a consumer on its own connection
/// leases it (woken the same way, as a worker is) and acknowledges at once. The round trip is enqueue, lease, ack and
/// collect: every Redis call an episode costs besides its generation (the take is once per iteration, not timed).
/// </summary>
public static class QueueLatencyBenchmark
{
    public static async Task<QueueLatency> RunAsync(string url, int items, CancellationToken ct = default)
    {
        await using var producerConnection = await RedisConnection.ConnectAsync(url).ConfigureAwait(false);
        await using var consumerConnection = await RedisConnection.ConnectAsync(url).ConfigureAwait(false);
        var producer = new RedisWorkQueue(producerConnection, "k2rl-bench:");
        var consumer = new RedisWorkQueue(consumerConnection, "k2rl-bench:");
        await producer.ClearAsync().ConfigureAwait(false);
        var produced = new SemaphoreSlim(0);
        var consumed = new SemaphoreSlim(0);
        await producerConnection.Subscriber.SubscribeAsync(producer.Events, (_, m) => { if (m == "done") { produced.Release(); } }).ConfigureAwait(false);
        await consumerConnection.Subscriber.SubscribeAsync(consumer.Events, (_, m) => { if (m == "work") { consumed.Release(); } }).ConfigureAwait(false);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var worker = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var (leases, _) = await consumer.LeaseAsync("bench", TimeSpan.FromSeconds(30), 64, TimeSpan.FromSeconds(3)).ConfigureAwait(false);
                foreach (var lease in leases)
                {
                    await consumer.AckAsync(lease, lease.Payload).ConfigureAwait(false);
                }

                if (leases.Count == 0)
                {
                    await consumed.WaitAsync(TimeSpan.FromMilliseconds(200), stop.Token).ConfigureAwait(false);
                }
            }
        }, CancellationToken.None);

        var ms = new double[items];
        string payload = new('x', 2048);   // about a small episode's item
        try
        {
            for (int i = 0; i < items; i++)
            {
                string id = $"echo-{i}";
                long t0 = Stopwatch.GetTimestamp();
                await producer.EnqueueAsync([(id, payload)]).ConfigureAwait(false);
                while ((await producer.CollectAsync([id]).ConfigureAwait(false))[0].State != ItemState.Done)
                {
                    await produced.WaitAsync(TimeSpan.FromMilliseconds(100), ct).ConfigureAwait(false);
                }

                ms[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                await producer.TakeAsync([id]).ConfigureAwait(false);   // the trainer takes a whole iteration's results at once
            }
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await worker.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }

        var sorted = ms.Skip(Math.Min(10, items / 10)).Order().ToArray();   // the first few warm the connections and scripts up
        return new QueueLatency(sorted.Length, Math.Round(Quantiles.NearestRank(sorted, 0.5), 3), Math.Round(Quantiles.NearestRank(sorted, 0.9), 3), sorted[^1]);
    }
}
