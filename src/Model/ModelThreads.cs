namespace K2RL.Model;

/// <summary>
/// The model's own fork/join pool for work that is naturally split into independent items (attention per
/// batch row × head, MoE per expert, per-token loops, decode per sequence). The calling thread is worker 0; up to
/// <see cref="Workers"/> − 1 persistent background threads join it. Threads claim items one at a time, so an
/// item's result never depends on which thread ran it: each item writes only its own outputs, and any
/// reduction across items is done afterwards in a fixed order by the caller. A worker index is passed to the
/// body so that it can use per-worker scratch. Allocation-free after the first call.
/// The caller never waits for a helper that has not woken yet: when it has claimed every item itself it closes
/// the batch and waits only for helpers already inside it (a late helper finds the batch closed, or joins the
/// next one, and goes back to sleep). A call made while the pool is busy (another model on another thread) runs
/// its items inline on worker 0.
/// </summary>
public static class ModelThreads
{
    private static readonly object StartGate = new();
    private static readonly int WorkerCount = Math.Max(1, Environment.ProcessorCount);
    private static SemaphoreSlim? wake;
    private static int busy;

    // the batch in flight: written by the caller before `open` is set, read by helpers after they see it set
    private static Action<int, int>? body;
    private static int itemCount;
    private static int nextItem;
    private static int open;      // 1 while helpers may join
    private static int inside;    // helpers registered in the current batch
    private static Exception? failure;

    /// <summary>Upper bound on the worker index passed to bodies (size per-worker scratch by it).</summary>
    public static int Workers => WorkerCount;

    /// <summary>One zeroed scratch buffer of <paramref name="length"/> floats per worker.</summary>
    public static float[][] PerWorker(long length)
    {
        var buffers = new float[WorkerCount][];
        for (int w = 0; w < WorkerCount; w++)
        {
            buffers[w] = new float[length];
        }

        return buffers;
    }

    /// <summary>
    /// Runs body(item, worker) once for each item in [0, count) and waits for all of them. With
    /// <paramref name="parallel"/> false (the caller judged the work too small to pay for waking a thread) the
    /// items run inline on worker 0; results are the same either way.
    /// </summary>
    public static void For(int count, Action<int, int> work, bool parallel = true)
    {
        if (count <= 0)
        {
            return;
        }

        if (!parallel || WorkerCount == 1 || count == 1 || Interlocked.CompareExchange(ref busy, 1, 0) != 0)
        {
            for (int i = 0; i < count; i++)
            {
                work(i, 0);
            }

            return;
        }

        try
        {
            EnsureStarted();
            body = work;
            itemCount = count;
            failure = null;
            nextItem = -1;
            Volatile.Write(ref open, 1);
            wake!.Release(Math.Min(WorkerCount - 1, count - 1));
            RunItems(work, count, 0);
            // every item is claimed: close the batch, then wait for the helpers that got in
            Volatile.Write(ref open, 0);
            var spin = new SpinWait();
            while (Volatile.Read(ref inside) != 0)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }

            body = null;
            if (failure is { } e)
            {
                throw new AggregateException("a model worker failed", e);
            }
        }
        finally
        {
            Volatile.Write(ref busy, 0);
        }
    }

    private static void RunItems(Action<int, int> b, int n, int worker)
    {
        int i;
        while ((i = Interlocked.Increment(ref nextItem)) < n)
        {
            try
            {
                b(i, worker);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref failure, e, null);
            }
        }
    }

    private static void EnsureStarted()
    {
        if (wake is not null)
        {
            return;
        }

        lock (StartGate)
        {
            if (wake is not null)
            {
                return;
            }

            var signal = new SemaphoreSlim(0);
            for (int w = 1; w < WorkerCount; w++)
            {
                int worker = w;
                var thread = new Thread(() => Loop(worker, signal))
                {
                    IsBackground = true,
                    Name = $"k2rl-model-{w}",
                };
                thread.Start();
            }

            wake = signal;
        }
    }

    private static void Loop(int worker, SemaphoreSlim signal)
    {
        while (true)
        {
            signal.Wait();
            Interlocked.Increment(ref inside);
            if (Volatile.Read(ref open) == 1)
            {
                var b = body;
                int n = itemCount;
                if (b is not null)
                {
                    RunItems(b, n, worker);
                }
            }

            Interlocked.Decrement(ref inside);
        }
    }
}
