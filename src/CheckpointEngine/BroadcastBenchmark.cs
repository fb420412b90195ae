using System.Diagnostics;

namespace K2RL.CheckpointEngine;

/// <summary>One network push: until every receiver holds the version (best of the repeats), and the CPU time of the whole
/// process (publisher and receivers) per version, its mean over the repeats.</summary>
public sealed record NetFigure(double Ms, double GbPerS, double CpuMs);

/// <summary>One transport's figures for one dtype. Rates are the fp32 parameter bytes delivered per second (so f32 and
/// bf16 compare: bf16 moves half the bytes for the same delivery). Net*: pushes over the receivers' data lanes (the
/// default); Grpc*: the same pushes to receivers without a lane, over gRPC (HTTP/2), for comparison.</summary>
/// <remarks>ShmReceiveCpuMs and ShmMemcpyCpuMs: the thread's own CPU time for the receive and for a memcpy of the same
/// bytes beside it (best of the repeats), which a loaded machine's scheduler does not stretch.</remarks>
public sealed record BroadcastDtypeFigures(string Dtype, long WireBytes, double InprocMs, double ShmPublishMs, double ShmReceiveMs,
    double ShmGbPerS, double ShmEndToEndGbPerS, double ShmReceiveCpuMs, double ShmMemcpyCpuMs, NetFigure Net1, NetFigure Net3Chain, NetFigure Net3Tree,
    double FetchMs, double FetchGbPerS, NetFigure Grpc1, NetFigure Grpc3Chain);

/// <summary>The figures of one buffer size: the memcpy baseline of the same run and each dtype's transports.</summary>
public sealed record BroadcastFigures(string Name, long Parameters, int Buckets, double MemcpyMs, double MemcpyGbPerS, IReadOnlyList<BroadcastDtypeFigures> Dtypes);

/// <summary>
/// <c>k2rl bench broadcast</c>: one buffer pushed through each transport, best of a few repeats, beside a plain copy of
/// the same bytes measured in the same run. In-process: publish + the reader taking it. Shared memory: the publisher's
/// write into /dev/shm and a receiver's verified copy out (timed apart; the receiver side is the one a rollout worker
/// pays). Network: loopback pushes over the receivers' data lanes (gRPC for control) to 1 receiver, to 3 receivers in a chain (relayed hop to hop) and in a tree (the
/// publisher feeds <c>fanout</c> subtrees, each hop relays to <c>fanout</c> more), until every receiver holds the
/// version, and a late receiver's fetch of the current version from a holder (server-streaming gRPC); then 1 and a chain
/// of 3 again with every byte over gRPC (receivers without a lane), the baseline the lane replaces. The receivers run in
/// this process (each its own Kestrel server, sockets and gRPC stack; the process's CPU time covers them all). The
/// tests run receivers as child processes (<c>k2rl ckpt receive</c>).
/// </summary>
public static class BroadcastBenchmark
{
    public static async Task<BroadcastFigures> RunAsync(string name, long count, IReadOnlyList<TensorSpec> tensors, int repeats, long capBytes,
        int fanout, Action<string> log)
    {
        var parameters = new float[count];
        var rng = new Random(12);
        for (long i = 0; i < count; i++)
        {
            parameters[i] = (float)(rng.NextDouble() - 0.5);
        }

        var copy = new float[count];
        double memcpy = Memcpy(parameters, copy, repeats);
        long bytes = count * sizeof(float);
        log($"{name}: {bytes / 1e6:0.0} MB, memcpy {memcpy:0.00} ms ({Gbps(bytes, memcpy):0.00} GB/s)");
        var dtypes = new List<BroadcastDtypeFigures>();
        foreach (var dtype in new[] { WeightDtype.F32, WeightDtype.Bf16 })
        {
            double inproc = Inproc(parameters, dtype, repeats);
            var (shmWrite, shmRead, shmMemcpy, shmReadCpu, shmMemcpyCpu) = Shm(parameters, copy, tensors, dtype, capBytes, repeats);
            memcpy = Math.Min(memcpy, shmMemcpy);
            var chainOptions = NetworkPublisherOptions.Topology("chain", 1, dtype, capBytes);
            var (net1, fetch) = await NetAsync(parameters, tensors, chainOptions, 1, lane: true, repeats, log);
            var (chain, _) = await NetAsync(parameters, tensors, chainOptions, 3, lane: true, repeats, log);
            var (tree, _) = await NetAsync(parameters, tensors, NetworkPublisherOptions.Topology("tree", fanout, dtype, capBytes), 3, lane: true, repeats, log);
            var (grpc1, _) = await NetAsync(parameters, tensors, chainOptions, 1, lane: false, repeats, log);
            var (grpcChain, _) = await NetAsync(parameters, tensors, chainOptions, 3, lane: false, repeats, log);
            var figures = new BroadcastDtypeFigures(dtype.Name(), count * dtype.Size(), inproc, shmWrite, shmRead, Gbps(bytes, shmRead),
                Gbps(bytes, shmWrite + shmRead), shmReadCpu, shmMemcpyCpu, net1, chain, tree, fetch, Gbps(bytes, fetch), grpc1, grpcChain);
            log($"  {figures}");
            dtypes.Add(figures);
        }

        int buckets = BucketPlan.Manifest(0, count, tensors, WeightDtype.F32, capBytes).Buckets.Count;
        return new BroadcastFigures(name, count, buckets, memcpy, Gbps(bytes, memcpy), dtypes);
    }

    private static double Gbps(long bytes, double ms) => bytes / (ms * 1e6);

    private static double Memcpy(float[] source, float[] target, int repeats)
    {
        source.CopyTo(target, 0);   // touch every page first
        return Best(repeats, _ => Time(() => source.CopyTo(target, 0)));
    }

    // A warm channel (two buffers allocated, as in a job after its first pushes); each timed push reuses the older one.
    private static double Inproc(float[] parameters, WeightDtype dtype, int repeats)
    {
        var channel = new InProcessWeightChannel(dtype);
        double best = double.MaxValue;
        for (int v = 0; v < repeats + 2; v++)
        {
            double t = Time(() =>
            {
                channel.Publish(v, parameters);
                Take(channel, v - 1);
            });
            best = v >= 2 ? Math.Min(best, t) : best;
        }

        return best;
    }

    private static void Take(IWeightSource source, long current)
    {
        if (source.TryGetNewer(current, out var w) && w is not null)
        {
            source.Release(w);
        }
    }

    // Each repeat also times a memcpy of the same bytes right before the receive: on a loaded machine the baseline is
    // the best of the copies made in the same minutes as the transfers (the run's memcpy is the best of all of them).
    private static (double Write, double Read, double Memcpy, double ReadCpu, double MemcpyCpu) Shm(float[] parameters, float[] copy,
        IReadOnlyList<TensorSpec> tensors, WeightDtype dtype, long capBytes, int repeats)
    {
        string name = $"bench-{Environment.ProcessId}";
        double write = double.MaxValue, read = double.MaxValue, memcpy = double.MaxValue, readCpu = double.MaxValue, memcpyCpu = double.MaxValue;
        try
        {
            using var publisher = new SharedMemoryWeightPublisher(name, parameters.Length, tensors, dtype, capBytes);
            using var receiver = new SharedMemoryWeightReceiver(name, tensors, parameters.Length);
            for (int r = 0; r <= repeats; r++)   // the first round warms the file and the receiver's buffers
            {
                double w = Time(() => publisher.Publish(r, parameters));
                double cpu0 = ThreadCpuMs();
                double c = Time(() => parameters.CopyTo(copy, 0));
                double cpu1 = ThreadCpuMs();
                double d = Time(() =>
                {
                    if (!receiver.TryReceive())
                    {
                        throw new WeightTransferException($"shared-memory receiver did not take version {r}: {receiver.LastError}");
                    }
                });
                double cpu2 = ThreadCpuMs();
                Take(receiver, r - 1);
                if (r > 0)
                {
                    write = Math.Min(write, w);
                    read = Math.Min(read, d);
                    memcpy = Math.Min(memcpy, c);
                    memcpyCpu = Math.Min(memcpyCpu, cpu1 - cpu0);
                    readCpu = Math.Min(readCpu, cpu2 - cpu1);
                }
            }
        }
        finally
        {
            File.Delete(SharedMemoryLayout.PathOf(name));
        }

        return (write, read, memcpy, readCpu, memcpyCpu);
    }

    // The push until every receiver holds the version; with one receiver also a late joiner's fetch of it from that one.
    private static async Task<(NetFigure Push, double Fetch)> NetAsync(float[] parameters, IReadOnlyList<TensorSpec> tensors, NetworkPublisherOptions options,
        int receivers, bool lane, int repeats, Action<string> log)
    {
        var dtype = options.Dtype;
        // Each receiver holds the wire bytes, the newest version and the one being assembled (with one receiver, a late
        // one fetches from it too); the publisher its encoding; 1 GB of headroom for the rest of the process.
        int holders = receivers == 1 ? 2 : receivers;
        long need = (parameters.LongLength * ((holders * (2 * sizeof(float) + dtype.Size())) + dtype.Size())) + (1L << 30);
        GC.Collect();
        if (need > BucketPlan.FreeBytes())
        {
            log($"  net x{receivers} {dtype.Name()}: skipped, needs {need / 1e9:0.0} GB and {BucketPlan.FreeBytes() / 1e9:0.0} GB are free");
            return (new NetFigure(double.NaN, double.NaN, double.NaN), double.NaN);
        }

        var nodes = new List<NetworkWeightReceiver>();
        try
        {
            for (int i = 0; i < receivers; i++)
            {
                nodes.Add(await NetworkWeightReceiver.StartAsync(tensors, new NetworkReceiverOptions { DataLanePort = lane ? 0 : null },
                    length: parameters.Length).ConfigureAwait(false));
            }

            using var publisher = new NetworkWeightPublisher(nodes.Select(n => n.Address).ToList(), parameters.Length, tensors, options);
            double best = double.MaxValue;
            var cpu = TimeSpan.Zero;
            for (int r = 0; r <= repeats; r++)
            {
                var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
                long t0 = Stopwatch.GetTimestamp();
                await publisher.PublishAsync(r, parameters).ConfigureAwait(false);
                double t = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                cpu += r > 0 ? Process.GetCurrentProcess().TotalProcessorTime - cpu0 : TimeSpan.Zero;
                if (publisher.LastFailures.Count > 0 || nodes.Any(n => n.HeldVersion != r))
                {
                    throw new WeightTransferException($"network push of version {r} failed: {string.Join("; ", publisher.LastFailures)}");
                }

                foreach (var n in nodes)
                {
                    Take(n, r - 1);
                }

                if (r > 0)
                {
                    best = Math.Min(best, t);
                }
            }

            if (nodes.Any(n => n.Node.DataLanePushes != (lane ? repeats + 1 : 0)))
            {
                throw new WeightTransferException($"the pushes did not all go {(lane ? "over the data lanes" : "over gRPC")}: lane pushes per receiver " +
                    string.Join(", ", nodes.Select(n => n.Node.DataLanePushes)));
            }

            double fetch = double.NaN;
            for (int r = 0; receivers == 1 && r < repeats; r++)
            {
                await using var late = await NetworkWeightReceiver.StartAsync(tensors, length: parameters.Length).ConfigureAwait(false);
                long t0 = Stopwatch.GetTimestamp();
                await late.Node.FetchFromAsync([nodes[0].Address]).ConfigureAwait(false);
                double t = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                fetch = late.HeldVersion == repeats ? Math.Min(double.IsNaN(fetch) ? double.MaxValue : fetch, t)
                    : throw new WeightTransferException($"a late receiver fetched version {late.HeldVersion}, not {repeats}");
            }

            long bytes = parameters.LongLength * sizeof(float);
            return (new NetFigure(best, Gbps(bytes, best), cpu.TotalMilliseconds / repeats), fetch);
        }
        finally
        {
            foreach (var n in nodes)
            {
                await n.DisposeAsync().ConfigureAwait(false);
            }

            BucketBuffers.Trim();   // the next case starts with the memory this one held given back
            System.Runtime.GCSettings.LargeObjectHeapCompactionMode = System.Runtime.GCLargeObjectHeapCompactionMode.CompactOnce;
            GC.Collect();
        }
    }

    // The calling thread's CPU time (Linux: CLOCK_THREAD_CPUTIME_ID, nanoseconds; NaN elsewhere).
    private static double ThreadCpuMs()
    {
        if (!OperatingSystem.IsLinux())
        {
            return double.NaN;
        }

        return ClockGetTime(3, out var ts) == 0 ? (ts.Seconds * 1e3) + (ts.Nanoseconds / 1e6) : double.NaN;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec time);

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private readonly struct TimeSpec
    {
        public readonly long Seconds;
        public readonly long Nanoseconds;
    }

    private static double Best(int repeats, Func<int, double> run)
    {
        double best = double.MaxValue;
        for (int r = 0; r < repeats; r++)
        {
            best = Math.Min(best, run(r));
        }

        return best;
    }

    private static double Time(Action action)
    {
        long t0 = Stopwatch.GetTimestamp();
        action();
        return Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
    }
}
