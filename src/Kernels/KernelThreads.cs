namespace K2RL.Kernels;

/// <summary>
/// The threads the parallel kernels use: the calling thread plus up to <see cref="Count"/> − 1 persistent
/// background workers. A parallel kernel cuts its work into a fixed number of parts chosen from the shapes
/// and the thread count alone; threads claim whole parts, so which thread runs a part never changes a result.
/// Small problems pay for no thread switch: the caller claims parts too and finishes alone if the workers are
/// slow to wake. A second kernel that arrives while the workers are busy runs on its own thread.
/// </summary>
public static class KernelThreads
{
    private static readonly object Gate = new();
    private static readonly SemaphoreSlim Wake = new(0);
    private static int count = Math.Max(1, Environment.ProcessorCount);
    private static int started;
    private static Batch? current;

    /// <summary>How many threads a kernel may use by default (≥ 1; default: the processor count).</summary>
    public static int Count
    {
        get => Volatile.Read(ref count);
        set
        {
            if (value < 1)
            {
                throw new ArgumentException($"KernelThreads.Count must be >= 1, got {value}", nameof(value));
            }

            Volatile.Write(ref count, value);
        }
    }

    /// <summary>One piece of parallel work: <see cref="Run"/> is called once for each part in [0, parts).</summary>
    internal interface IJob
    {
        void Run(int part, int parts);
    }

    /// <summary>Runs every part of <paramref name="job"/> once, on up to <paramref name="threads"/> threads, and waits.</summary>
    internal static void Run(IJob job, int parts, int threads)
    {
        threads = Math.Min(threads, parts);
        if (threads <= 1 || !Monitor.TryEnter(Gate))
        {
            for (int p = 0; p < parts; p++)
            {
                job.Run(p, parts);
            }

            return;
        }

        try
        {
            EnsureWorkers(threads - 1);
            var batch = new Batch(job, parts, helpers: threads - 1);
            Volatile.Write(ref current, batch);
            Wake.Release(threads - 1);
            batch.Work();
            batch.WaitAll();
            Volatile.Write(ref current, null);
            if (batch.Error is { } error)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error); // as if run on the caller
            }
        }
        finally
        {
            Monitor.Exit(Gate);
        }
    }

    private static void EnsureWorkers(int needed)
    {
        while (started < needed)
        {
            var thread = new Thread(WorkerLoop) { IsBackground = true, Name = $"k2rl-kernel-{started + 1}" };
            thread.Start();
            started++;
        }
    }

    /// <summary>
    /// A worker spins for <see cref="IdleSpin"/> after its last part before it sleeps, so back-to-back kernels
    /// (a training step is hundreds of small GEMMs) do not pay a wake-up each; on a loaded machine a wake-up can
    /// cost a scheduler time slice, far more than a k2-nano GEMM.
    /// </summary>
    private static readonly long IdleSpin = System.Diagnostics.Stopwatch.Frequency / 1000;

    private static void WorkerLoop()
    {
        while (true)
        {
            long until = System.Diagnostics.Stopwatch.GetTimestamp() + IdleSpin;
            while (System.Diagnostics.Stopwatch.GetTimestamp() < until)
            {
                Wake.Wait(0); // drop a wake-up meant for this spin
                if (Volatile.Read(ref current) is { HasWork: true } batch && batch.TryJoin())
                {
                    batch.Work();
                    until = System.Diagnostics.Stopwatch.GetTimestamp() + IdleSpin;
                }
                else
                {
                    Thread.SpinWait(30);
                }
            }

            Wake.Wait();
            if (Volatile.Read(ref current) is { } woken && woken.TryJoin())
            {
                woken.Work();
            }
        }
    }

    /// <summary>One kernel's parts; at most <paramref name="helpers"/> workers join the caller on it.</summary>
    private sealed class Batch(IJob job, int parts, int helpers)
    {
        private int seats = helpers;
        private readonly ManualResetEventSlim finished = new(false, spinCount: 200);
        private int next = -1;
        private int done;

        public Exception? Error { get; private set; }

        public bool HasWork => Volatile.Read(ref next) < parts - 1 && Volatile.Read(ref seats) > 0;

        /// <summary>Takes one of the helper seats; false when the kernel already has all the threads it asked for.</summary>
        public bool TryJoin() => Interlocked.Decrement(ref seats) >= 0;

        /// <summary>Claims and runs parts until none are left.</summary>
        public void Work()
        {
            int p;
            while ((p = Interlocked.Increment(ref next)) < parts)
            {
                try
                {
                    job.Run(p, parts);
                }
                catch (Exception e)
                {
                    Error ??= e;
                }

                if (Interlocked.Increment(ref done) == parts)
                {
                    finished.Set();
                }
            }
        }

        public void WaitAll()
        {
            // Spin a while first: the other parts usually end within microseconds of this one.
            long until = System.Diagnostics.Stopwatch.GetTimestamp() + IdleSpin;
            while (Volatile.Read(ref done) < parts && System.Diagnostics.Stopwatch.GetTimestamp() < until)
            {
                Thread.SpinWait(20);
            }

            if (Volatile.Read(ref done) < parts)
            {
                finished.Wait();
            }

            // Not disposed: the worker that finished last may still be inside Set(); the event holds no OS handle.
        }
    }
}
