namespace K2RL.CheckpointEngine.Planning;

/// <summary>
/// A static shard-to-shard schedule (the design of Perplexity's RDMA weight transfer): computed once, each tensor is
/// sent by one trainer accelerator straight to the inference ranks whose shard needs it — rank k of every replica gets
/// only its slice, written in place (one-sided), so there is no broadcast to every rank and no reload stage. Senders
/// are balanced by bytes (largest tensor first to the least loaded). Each accelerator's links run at once (NIC share
/// across nodes, intra-node link inside one, device copy to itself); the host-to-device copy of the sender's weights,
/// when they sit in host memory, is pipelined with the transfer in bucket-sized chunks.
/// </summary>
public static class ShardToShardPlanner
{
    public static DesignPlan Plan(ClusterSpec c, IReadOnlyList<TensorDescriptor> tensors, long chunkBytes)
    {
        int senders = c.TrainerAccelerators, tp = c.Inference.Tp;
        var (perRank, ops, held) = Assign(c, tensors, senders);
        var (traffic, crossBytes) = Route(c, perRank);

        double transfer = traffic.Max();
        double post = ops.Max() * c.Replicas * c.RdmaOpUs * 1e-6;
        double h2d = c.Trainer.WeightsOnHost ? held.Max() / c.HostToDeviceConcurrent : 0;
        long chunks = Math.Max(1, (held.Max() + chunkBytes - 1) / chunkBytes);
        double[] stage = [h2d, Math.Max(transfer, post)];
        double total = stage.Max() + (stage.Sum() - stage.Max()) / chunks + 2 * c.Broadcast.ControlUsPerBucket * 1e-6;

        var stages = new List<StageTime>
        {
            new("h2d", h2d, c.Trainer.WeightsOnHost ? "each sender's weights host → device once" : "weights already on the device"),
            new("transfer", transfer, "the busiest accelerator's link: NIC share, intra-node link or its own memory"),
            new("post", post, $"posting one write per (tensor, receiving rank) at {c.RdmaOpUs} µs"),
        };
        long shipped = tensors.Sum(t => t.Bytes);
        var notes = new List<string>
        {
            $"{senders} sender(s) → {c.Replicas} replica(s) × tp {tp}; the most one sender holds: {held.Max() / 1e9:0.###} GB; "
            + $"{crossBytes / 1e9:0.###} GB cross nodes of {(double)shipped * c.Replicas / 1e9:0.###} GB delivered",
            $"pipelined in {chunks} chunk(s) of up to {chunkBytes / (double)UpdatePlanner.GiB:0.00} GiB per sender",
            "not modelled: trainer-side gathers (FSDP full_tensor), projection fusion and quantization to the engine's format",
        };
        return new DesignPlan("shard_to_shard", total, stages, notes);
    }

    // Each tensor to the least-loaded sender, largest first: bytes per (sender, inference rank), writes per sender
    // (one per rank that needs a slice, per replica) and the bytes each sender holds.
    private static (long[,] PerRank, long[] Ops, long[] Held) Assign(ClusterSpec c, IReadOnlyList<TensorDescriptor> tensors, int senders)
    {
        int tp = c.Inference.Tp;
        var perRank = new long[senders, tp];
        var ops = new long[senders];
        var held = new long[senders];
        var queue = new PriorityQueue<int, (long, int)>();
        for (int s = 0; s < senders; s++)
        {
            queue.Enqueue(s, (0, s));
        }

        foreach (var t in tensors.OrderByDescending(t => t.Bytes))
        {
            int s = queue.Dequeue();
            held[s] += t.Bytes;
            for (int k = 0; k < tp; k++)
            {
                long b = t.BytesFor(k, tp, c.Inference.ExpertParallel);
                perRank[s, k] += b;
                ops[s] += b > 0 ? 1 : 0;
            }

            queue.Enqueue(s, (held[s], s));
        }

        return (perRank, ops, held);
    }

    // Seconds each accelerator's busiest link needs (senders and receivers; a co-located one is both), and the bytes
    // that cross nodes. Links are full duplex: sending and receiving are counted apart.
    private static (double[] Seconds, double CrossBytes) Route(ClusterSpec c, long[,] perRank)
    {
        int senders = perRank.GetLength(0), tp = c.Inference.Tp, receivers = c.InferenceAccelerators;
        var (crossOut, intraOut, crossIn, intraIn, local) =
            (new double[senders], new double[senders], new double[receivers], new double[receivers], new double[receivers]);
        double cross = 0;
        for (int s = 0; s < senders; s++)
        {
            int senderNode = c.Trainer.Colocated ? s / c.AcceleratorsPerNode : c.Nodes + s / c.AcceleratorsPerNode;
            for (int j = 0; j < receivers; j++)
            {
                double b = perRank[s, j % tp];
                if (b == 0)
                {
                    continue;
                }

                if (c.Trainer.Colocated && s == j)
                {
                    local[j] += b;
                }
                else if (senderNode == j / c.AcceleratorsPerNode)
                {
                    intraOut[s] += b;
                    intraIn[j] += b;
                }
                else
                {
                    crossOut[s] += b;
                    crossIn[j] += b;
                    cross += b;
                }
            }
        }

        double nic = c.NicPerAccelerator, intra = c.IntraNode.Effective, mem = c.Accelerator.MemoryGbPerS * 1e9;
        var seconds = new double[senders + receivers];
        for (int s = 0; s < senders; s++)
        {
            seconds[s] = Math.Max(crossOut[s] / nic, intraOut[s] / intra);
        }

        for (int j = 0; j < receivers; j++)
        {
            seconds[senders + j] = Math.Max(Math.Max(crossIn[j] / nic, intraIn[j] / intra), 2 * local[j] / mem);
        }

        return (seconds, cross);
    }
}
