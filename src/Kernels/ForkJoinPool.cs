using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace K2RL.Kernels;

/// <summary>
/// The one fork/join pool of K2RL: the packed GEMM's parts, and the model's independent items (attention per batch
/// row × head, MoE per expert, decode per sequence, Muon per group of matrices). The calling thread is worker 0; up
/// to <see cref="Threads"/> − 1 persistent background workers, started on first need, join it. Threads claim items
/// one at a time, so an item's result never depends on which thread ran it: each item writes only its own outputs,
/// and a reduction across items is the caller's, afterwards, in a fixed order. The worker index passed to the body
/// lets it use per-worker scratch (<see cref="PerWorker"/>).
/// <para>
/// Allocation-free per call: one batch is in flight at a time and its state lives in the pool's fields; bodies are
/// delegates the callers build once. The caller never waits for a helper that has not woken: once it has claimed
/// every item it closes the batch and waits only for the helpers inside it. A call made while the pool is busy (a
/// nested call from a body, or another model on another thread) runs its items inline, with the calling thread's
/// own worker index. Each batch has an id and a helper tries each batch once: one that has run its share, or
/// found no free seat, sleeps (or lingers) until the next batch instead of polling the open one, which would burn
/// its core and, were it preempted while registered, hold up the caller's close. A batch may ask its helpers to
/// <c>linger</c> (spin ~1 ms before sleeping, watching for the next batch) when the caller issues many short
/// batches back to back, as a training step does with its GEMMs; decode does not (the spin burns the cores its
/// next items need).
/// </para>
/// <para>
/// The thread count is fixed when a pool is built. <see cref="Shared"/>, the pool everything uses, takes it once
/// from <c>K2RL_THREADS</c> (default: the processor count) and never changes; a caller that wants fewer threads
/// for one call passes a smaller <c>maxThreads</c>; tests build pools of their own.
/// </para>
/// </summary>
public sealed class ForkJoinPool : IDisposable
{
    /// <summary>The environment variable that sets <see cref="Shared"/>'s thread count (a whole number ≥ 1).</summary>
    public const string ThreadsVariable = "K2RL_THREADS";

    private static ForkJoinPool? shared;

    /// <summary>How long lingering helpers spin after their last item before they sleep.</summary>
    private static readonly long LingerTicks = Stopwatch.Frequency / 1000;

    [ThreadStatic]
    private static ForkJoinPool? workerOf;

    [ThreadStatic]
    private static int workerIndex;

    private readonly SemaphoreSlim wake = new(0);
    private int started;          // background workers started (only the caller holding `busy` starts more)
    private int sleepers;         // workers blocked on `wake`, or about to be
    private int busy;             // 1 while a batch is in flight
    private volatile bool stopping;

    // the batch in flight: written by the caller before `open` is set, read by helpers once they see it set
    private Action<int, int>? body;
    private int itemCount;
    private int nextItem;
    private int seats;            // helpers that may still join
    private bool linger;
    private int open;             // the id of the batch helpers may join (> 0), 0 while none is open
    private int lastBatch;        // the id of the latest batch (only the caller holding `busy` changes it)
    private int inside;           // helpers registered in the batch (joined or looking)
    private Exception? failure;

    /// <summary>A pool of <paramref name="threads"/> threads, the caller included (≥ 1).</summary>
    public ForkJoinPool(int threads)
    {
        if (threads < 1)
        {
            throw new ArgumentException($"a fork/join pool needs >= 1 thread, got {threads}", nameof(threads));
        }

        Threads = threads;
    }

    /// <summary>
    /// The process's pool, built on first use with <see cref="ThreadsFrom"/>(<c>K2RL_THREADS</c>) threads; read-only
    /// thereafter (there is no setter: a process that wants another count sets the variable before it starts).
    /// </summary>
    public static ForkJoinPool Shared => Volatile.Read(ref shared) ?? CreateShared();

    /// <summary>Threads of a batch, the caller included; also the bound on the worker index passed to bodies.</summary>
    public int Threads { get; }

    /// <summary>The thread count a value of <c>K2RL_THREADS</c> asks for: unset or empty means the processor count.</summary>
    public static int ThreadsFrom(string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            return Math.Max(1, Environment.ProcessorCount);
        }

        if (!int.TryParse(value.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture,
                out int n) || n < 1)
        {
            throw new ArgumentException($"{ThreadsVariable} must be a whole number >= 1, got '{value}'", nameof(value));
        }

        return n;
    }

    /// <summary>One zeroed scratch buffer of <paramref name="length"/> floats per worker.</summary>
    public float[][] PerWorker(long length)
    {
        var buffers = new float[Threads][];
        for (int w = 0; w < Threads; w++)
        {
            buffers[w] = new float[length];
        }

        return buffers;
    }

    /// <summary>
    /// Runs body(item, worker) once for each item in [0, count) on up to <see cref="Threads"/> threads and waits.
    /// With <paramref name="parallel"/> false (the caller judged the work too small to pay for waking a thread) the
    /// items run inline; results are the same either way.
    /// </summary>
    public void For(int count, Action<int, int> body, bool parallel = true)
        => For(count, body, parallel ? Threads : 1, linger: false);

    /// <summary>
    /// As above on at most <paramref name="maxThreads"/> threads; with <paramref name="linger"/> the helpers spin
    /// ~1 ms after the batch before they sleep, so a caller's next batch finds them awake.
    /// </summary>
    public void For(int count, Action<int, int> body, int maxThreads, bool linger)
    {
        int threads = Math.Min(Math.Min(maxThreads, Threads), count);
        if (threads <= 1 || Interlocked.CompareExchange(ref busy, 1, 0) != 0)
        {
            int worker = workerOf == this ? workerIndex : 0;
            for (int i = 0; i < count; i++)
            {
                body(i, worker);
            }

            return;
        }

        try
        {
            StartWorkers(threads - 1);
            this.body = body;
            itemCount = count;
            nextItem = -1;
            seats = threads - 1;
            this.linger = linger;
            failure = null;
            lastBatch = lastBatch == int.MaxValue ? 1 : lastBatch + 1;
            Interlocked.Exchange(ref open, lastBatch); // publishes the batch; a full fence before `sleepers` is read
            int asleep = Volatile.Read(ref sleepers);
            if (asleep > 0)
            {
                wake.Release(Math.Min(asleep, threads - 1));
            }

            RunItems(body, count, 0);
            Interlocked.Exchange(ref open, 0); // every item is claimed; a full fence before `inside` is read
            var spin = new SpinWait();
            while (Volatile.Read(ref inside) != 0)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }

            this.body = null;
            if (failure is { } e)
            {
                ExceptionDispatchInfo.Throw(e); // as if it had run on the caller
            }
        }
        finally
        {
            Volatile.Write(ref busy, 0);
        }
    }

    /// <summary>Stops the background workers once they are idle (the shared pool lives as long as the process).</summary>
    public void Dispose()
    {
        stopping = true;
        wake.Release(Math.Max(1, Volatile.Read(ref started)));
    }

    private static ForkJoinPool CreateShared()
    {
        var pool = new ForkJoinPool(ThreadsFrom(Environment.GetEnvironmentVariable(ThreadsVariable)));
        return Interlocked.CompareExchange(ref shared, pool, null) ?? pool; // a loser never started a thread
    }

    private void RunItems(Action<int, int> work, int count, int worker)
    {
        int i;
        while ((i = Interlocked.Increment(ref nextItem)) < count)
        {
            try
            {
                work(i, worker);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref failure, e, null);
            }
        }
    }

    private void StartWorkers(int needed)
    {
        while (started < needed)
        {
            int worker = ++started;
            var thread = new Thread(() => Loop(worker)) { IsBackground = true, Name = $"k2rl-pool-{worker}" };
            thread.Start();
        }
    }

    private void Loop(int worker)
    {
        workerOf = this;
        workerIndex = worker;
        int seen = 0; // the last batch this worker tried to join: it tries each batch once, then waits for the next
        while (!stopping)
        {
            if (TryJoin(worker, ref seen, out bool lingering) && lingering)
            {
                long until = Stopwatch.GetTimestamp() + LingerTicks;
                while (Stopwatch.GetTimestamp() < until && !stopping)
                {
                    if (TryJoin(worker, ref seen, out lingering))
                    {
                        until = lingering ? Stopwatch.GetTimestamp() + LingerTicks : 0;
                    }
                    else
                    {
                        Thread.SpinWait(30);
                    }
                }
            }

            Interlocked.Increment(ref sleepers);
            int batch = Volatile.Read(ref open);
            if ((batch == 0 || batch == seen) && !stopping)
            {
                wake.Wait(); // a batch opened after the increment above sees this sleeper and releases it
            }

            Interlocked.Decrement(ref sleepers);
        }
    }

    /// <summary>
    /// Joins the open batch if this worker has not tried it yet and it has a free seat, and runs items until none
    /// are left. A worker that finds no seat, or has served the batch already, leaves it alone: it neither spins
    /// on the batch's fields nor registers in it, so the caller never waits for it.
    /// </summary>
    private bool TryJoin(int worker, ref int seen, out bool lingering)
    {
        lingering = false;
        int batch = Volatile.Read(ref open);
        if (batch == 0 || batch == seen)
        {
            return false;
        }

        seen = batch;
        Interlocked.Increment(ref inside);
        bool joined = Volatile.Read(ref open) == batch && Interlocked.Decrement(ref seats) >= 0;
        if (joined)
        {
            lingering = linger;
            RunItems(body!, itemCount, worker);
        }

        Interlocked.Decrement(ref inside);
        return joined;
    }
}
