using System.Collections.Concurrent;
using K2RL.Kernels;

namespace K2RL.Kernels.Tests;

public class ForkJoinPoolTests
{
    private static (int Item, int Worker, int Thread)[] Record(ForkJoinPool pool, int count, int maxThreads, bool linger)
    {
        var runs = new ConcurrentBag<(int, int, int)>();
        pool.For(count, (item, worker) =>
        {
            Thread.SpinWait(20000);
            runs.Add((item, worker, Environment.CurrentManagedThreadId));
        }, maxThreads, linger);
        return runs.ToArray();
    }

    [Theory]
    [InlineData(8, 2, false)]
    [InlineData(3, 3, true)]
    [InlineData(5, 1, false)]
    [InlineData(1, 4, true)]
    [InlineData(0, 4, false)]
    public void EveryItemRunsOnceOnAtMostTheThreadsAskedFor(int count, int maxThreads, bool linger)
    {
        using var pool = new ForkJoinPool(4);
        Record(pool, 4, 4, linger: true); // start more workers than the later calls may use
        for (int rep = 0; rep < 20; rep++)
        {
            var runs = Record(pool, count, maxThreads, linger);
            Assert.Equal(Enumerable.Range(0, count), runs.Select(r => r.Item).Order());
            Assert.InRange(runs.Select(r => r.Thread).Distinct().Count(), 0, maxThreads);
            Assert.All(runs, r => Assert.InRange(r.Worker, 0, pool.Threads - 1));
            // one worker index per thread, so per-worker scratch is never shared by two threads at once
            Assert.All(runs.GroupBy(r => r.Worker), g => Assert.Single(g.Select(r => r.Thread).Distinct()));
        }
    }

    [Fact]
    public void AFailingItemSurfacesOnTheCaller()
    {
        using var pool = new ForkJoinPool(3);
        var e = Assert.Throws<InvalidOperationException>(() => pool.For(6, (item, _) =>
        {
            if (item == 3)
            {
                throw new InvalidOperationException("item 3");
            }
        }));
        Assert.Equal("item 3", e.Message);
        int ran = 0;
        pool.For(6, (_, _) => Interlocked.Increment(ref ran)); // the pool still works
        Assert.Equal(6, ran);
    }

    [Fact]
    public void ANestedCallRunsInlineWithTheCallersWorkerIndex()
    {
        using var pool = new ForkJoinPool(3);
        var mismatches = new ConcurrentBag<string>();
        pool.For(12, (item, worker) =>
        {
            Thread.SpinWait(5000);
            pool.For(4, (inner, innerWorker) =>
            {
                if (innerWorker != worker)
                {
                    mismatches.Add($"item {item}.{inner}: worker {innerWorker}, outer {worker}");
                }
            });
        });
        Assert.Empty(mismatches);
    }

    [Fact]
    public void ForWithACachedBodyAllocatesNothing()
    {
        using var pool = new ForkJoinPool(2);
        var sums = new long[64];
        Action<int, int> body = (item, _) => sums[item] += item;
        pool.For(sums.Length, body); // starts the worker
        pool.For(1, body);           // the inline path's thread-statics
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 200; i++)
        {
            pool.For(sums.Length, body);
            pool.For(sums.Length, body, maxThreads: 2, linger: true);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(401L * 5, sums[5]);
    }

    [Fact]
    public void AHelperDoesNotPollABatchItHasServed()
    {
        // The pool's first version let a helper that had run its share, or found no seat, poll the still-open
        // batch until the caller closed it: a core burnt for every batch whose last item ran on the caller (decode
        // used ~2x the CPU per token). The helper's own CPU time (Linux /proc) while the caller sleeps in its item
        // must stay near zero.
        if (!File.Exists("/proc/thread-self/stat"))
        {
            return;
        }

        using var pool = new ForkJoinPool(2);
        string? helperStat = null;
        for (int attempt = 0; attempt < 20 && helperStat is null; attempt++)
        {
            int started = 0;
            pool.For(2, (_, worker) =>
            {
                Interlocked.Increment(ref started);
                if (worker != 0)
                {
                    helperStat = "/proc/" + new FileInfo("/proc/thread-self").LinkTarget + "/stat";
                }

                var wait = System.Diagnostics.Stopwatch.StartNew();
                while (Volatile.Read(ref started) < 2 && wait.ElapsedMilliseconds < 1000)
                {
                    Thread.Sleep(1);
                }
            });
        }

        Assert.NotNull(helperStat);
        long before = CpuTicks(helperStat);
        for (int rep = 0; rep < 3; rep++)
        {
            pool.For(2, (_, worker) =>
            {
                if (worker == 0)
                {
                    Thread.Sleep(200);
                }
            });
        }

        Assert.InRange(CpuTicks(helperStat) - before, 0, 10); // clock ticks (10 ms each); polling spent ~60
    }

    /// <summary>utime + stime of one thread, from its /proc stat line.</summary>
    private static long CpuTicks(string statPath)
    {
        string stat = File.ReadAllText(statPath);
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[11]) + long.Parse(fields[12]);
    }

    [Fact]
    public void TheThreadCountComesFromTheVariableOrTheProcessorCount()
    {
        Assert.Equal(Math.Max(1, Environment.ProcessorCount), ForkJoinPool.ThreadsFrom(null));
        Assert.Equal(Math.Max(1, Environment.ProcessorCount), ForkJoinPool.ThreadsFrom(" "));
        Assert.Equal(3, ForkJoinPool.ThreadsFrom("3"));
        foreach (string bad in new[] { "0", "-2", "two", "1.5" })
        {
            var e = Assert.Throws<ArgumentException>(() => ForkJoinPool.ThreadsFrom(bad));
            Assert.Contains(ForkJoinPool.ThreadsVariable, e.Message);
        }

        Assert.Throws<ArgumentException>(() => new ForkJoinPool(0));
        Assert.True(ForkJoinPool.Shared.Threads >= 1);
        Assert.Same(ForkJoinPool.Shared, ForkJoinPool.Shared);
    }
}
