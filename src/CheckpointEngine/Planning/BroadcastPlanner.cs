namespace K2RL.CheckpointEngine.Planning;

/// <summary>
/// checkpoint-engine's broadcast update (v0.1.3, ps.py <c>_update_per_bucket</c>) as a schedule. Round i: every owner
/// copies its i-th bucket host → device at once (the H2D buffer), then owner by owner: a device copy into one half of
/// the double buffer, a ring broadcast to every rank, a barrier and a control round trip, and the inference engine
/// loads what its shard needs out of the buffer (the reload) while the next bucket is broadcast into the other half —
/// when the engine's load can overlap the broadcast at all (<see cref="InferenceSpec.OverlapReload"/>).
/// </summary>
public static class BroadcastPlanner
{
    public static DesignPlan Plan(ClusterSpec c, IReadOnlyList<List<BucketLoad>> owners, Bucketing bucketing)
    {
        double endBarrier = 0, endReload = 0;
        double h2d = 0, broadcast = 0, reload = 0, control = 0;
        double memBw = c.Accelerator.MemoryGbPerS * 1e9;
        double controlS = c.Broadcast.ControlUsPerBucket * 1e-6;
        for (int i = 0; i < bucketing.Rounds; i++)
        {
            double h2dEnd = endBarrier;
            if (bucketing.H2dBuffer)
            {
                // All owners copy their i-th bucket at once; the round waits for the slowest.
                double th = owners.Where(o => i < o.Count).Max(o => o[i].Bytes) / c.HostToDeviceConcurrent;
                h2dEnd += th;
                h2d += th;
            }

            foreach (var owner in owners)
            {
                if (i >= owner.Count)
                {
                    continue;
                }

                var bucket = owner[i];
                double copy = bucketing.H2dBuffer ? 2.0 * bucket.Bytes / memBw : bucket.Bytes / c.HostToDevice.Effective;
                double ring = RingSeconds(c, bucket.Bytes);
                double load = bucket.Tensors * c.Inference.ReloadUsPerTensor * 1e-6 + 2.0 * bucket.MaxRankBytes / memBw;
                double start = Math.Max(h2dEnd, endBarrier);
                if (!c.Inference.OverlapReload)
                {
                    start = Math.Max(start, endReload);
                }

                double endBroadcast = start + copy + ring;
                double reloadStart = Math.Max(endBroadcast, endReload) + controlS;
                endBarrier = reloadStart;
                endReload = reloadStart + load;
                if (bucketing.H2dBuffer)
                {
                    broadcast += copy + ring;
                }
                else
                {
                    h2d += copy;          // without the H2D buffer the owner's copy is the host → device one
                    broadcast += ring;
                }

                reload += load;
                control += controlS;
            }
        }

        var stages = new List<StageTime>
        {
            new("h2d", h2d, bucketing.H2dBuffer ? "host → device, all owners at once per round" : "host → device, one owner at a time"),
            new("broadcast", broadcast, $"ring broadcast to {c.WorldNodes * c.AcceleratorsPerNode} ranks (plus the owner's device copy)"),
            new("reload", reload, "inference engine loads its shard out of each bucket"),
            new("control", control, "barrier + control round trip per bucket"),
        };
        var notes = new List<string>
        {
            $"ring bus bandwidth {BusBandwidth(c) / 1e9:0.#} GB/s, pipeline fill {RingFillSeconds(c) * 1e3:0.###} ms per bucket",
            c.Inference.OverlapReload
                ? "the reload of bucket g overlaps the broadcast of bucket g+1 (double buffer)"
                : "the reload and the broadcast run in series: two processes on one GPU time-slice it (no MPS), so the double buffer hides only the control round trip",
        };
        return new DesignPlan("broadcast", endReload, stages, notes);
    }

    /// <summary>
    /// A ring broadcast's bus bandwidth: the intra-node link inside one node; across nodes the smaller of it and the
    /// node's NICs together (each channel of the ring leaves the node through its own NIC, rail-aligned).
    /// </summary>
    public static double BusBandwidth(ClusterSpec c) => c.WorldNodes == 1
        ? c.IntraNode.Effective
        : Math.Min(c.IntraNode.Effective, c.NicsPerNode * c.InterNode.Effective);

    /// <summary>
    /// The ring's pipeline fill: the first chunk crosses N − 1 hops at one channel's share of the bandwidth, plus each
    /// hop's latency (intra-node hops and one inter-node hop per further node).
    /// </summary>
    public static double RingFillSeconds(ClusterSpec c)
    {
        int n = c.WorldNodes * c.AcceleratorsPerNode;
        if (n == 1)
        {
            return 0;
        }

        double channel = BusBandwidth(c) / c.Broadcast.Channels;
        double chunk = c.Broadcast.ChunkKib * 1024;
        int interHops = c.WorldNodes - 1;
        return (n - 1) * chunk / channel + ((n - 1 - interHops) * c.IntraNode.LatencyUs + interHops * c.InterNode.LatencyUs) * 1e-6;
    }

    /// <summary>Seconds to broadcast <paramref name="bytes"/> to every rank of the update's world (0 with one rank).</summary>
    public static double RingSeconds(ClusterSpec c, long bytes) =>
        c.WorldNodes * c.AcceleratorsPerNode == 1 ? 0 : RingFillSeconds(c) + bytes / BusBandwidth(c);
}
