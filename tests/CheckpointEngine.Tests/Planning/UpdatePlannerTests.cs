using K2RL.CheckpointEngine.Planning;
using K2RL.Common;

namespace K2RL.CheckpointEngine.Tests.Planning;

public class UpdatePlannerTests
{
    private const long GiB = UpdatePlanner.GiB;

    private static TensorDescriptor T(string name, long bytes, ShardRule rule = ShardRule.Split, int expert = -1) => new(name, bytes, rule, expert);

    [Fact]
    public void BucketIsTheCapOrTheLargestTensorBoundedByAThirdOfFreeMemory()
    {
        var spec = new BucketMemorySpec(FreeMemoryGib: 30, MemFraction: 1, CapGib: 8);
        Assert.Equal((8 * GiB, true), UpdatePlanner.BucketBytes(spec, GiB));                    // the cap
        Assert.Equal((9 * GiB, true), UpdatePlanner.BucketBytes(spec, 9 * GiB));                // the largest tensor
        var tight = spec with { FreeMemoryGib = 9.56, MemFraction = 0.9 };                       // an H20 beside vLLM
        var (bytes, h2d) = UpdatePlanner.BucketBytes(tight, GiB);
        Assert.True(h2d);
        Assert.Equal((long)(9.56 * GiB * 0.9) / (3 * 256) * 256, bytes);                         // free/3, 256-aligned
        Assert.InRange(bytes / (double)GiB, 2.86, 2.87);                                         // published: 2.93 / 2.99 GiB
    }

    [Fact]
    public void ATensorOverAThirdDropsTheHostBufferAndOneOverHalfIsRefused()
    {
        var spec = new BucketMemorySpec(FreeMemoryGib: 3, MemFraction: 1, CapGib: 8);
        Assert.Equal((3 * GiB / 2, false), UpdatePlanner.BucketBytes(spec, (long)(1.2 * GiB)));   // free/2
        var e = Assert.Throws<K2Exception>(() => UpdatePlanner.BucketBytes(spec, 2 * GiB));
        Assert.Contains("largest tensor (2,147,483,648 bytes)", e.Message);
    }

    [Fact]
    public void OwnersGetContiguousEqualCountsAndBucketsFillInOrder()
    {
        var tensors = Enumerable.Range(0, 7).Select(i => T($"t{i}", 100 + i)).ToArray();
        var owners = UpdatePlanner.SplitByCount(tensors, 3);
        Assert.Equal(["t0", "t1", "t2"], owners[0].Select(t => t.Name));
        Assert.Equal(["t6"], owners[2].Select(t => t.Name));

        // 256-aligned: each tensor takes 256 bytes of a bucket; 600 bytes hold two.
        var buckets = UpdatePlanner.Fill(tensors, 600, new InferenceSpec(1, false, 0, false));
        Assert.Equal([2, 2, 2, 1], buckets.Select(b => b.Tensors));
        Assert.All(buckets, b => Assert.Equal(256L * b.Tensors, b.Bytes));
    }

    [Fact]
    public void ShardRulesGiveEachRankItsBytes()
    {
        Assert.Equal(10, T("n", 10, ShardRule.Replicated).BytesFor(3, 4, false));
        Assert.Equal([3, 3, 2, 2], Enumerable.Range(0, 4).Select(k => T("w", 10).BytesFor(k, 4, false)));
        var expert5 = T("e", 40, ShardRule.Expert, 5);
        Assert.Equal([10, 10, 10, 10], Enumerable.Range(0, 4).Select(k => expert5.BytesFor(k, 4, false)));
        Assert.Equal([0, 40, 0, 0], Enumerable.Range(0, 4).Select(k => expert5.BytesFor(k, 4, true)));    // 5 mod 4 = rank 1
    }

    // Two holders of two half-GiB tensors each on one node of two ranks (tiny.yaml): one round, two 1-GiB buckets.
    private static (UpdatePlan Plan, double H2d, double Copy, double Ring, double Reload) TwoBuckets(bool overlap)
    {
        var cluster = PlanningFixtures.Tiny("overlap_reload: false", $"overlap_reload: {(overlap ? "true" : "false")}");
        var tensors = Enumerable.Range(0, 4).Select(i => T($"t{i}", GiB / 2)).ToArray();
        var plan = UpdatePlanner.Plan(cluster, tensors);
        double h2d = GiB / 10e9;                               // host → device at 10 GB/s, both holders at once
        double copy = 2.0 * GiB / 100e9;                        // the owner's device copy into the broadcast buffer
        double ring = 1024 / 5e9 + GiB / 5e9;                   // one hop's chunk fill + the bucket at 5 GB/s
        double reload = 2 * 1e-3 + 2.0 * GiB / 100e9;           // 1 ms per tensor + tp 1: the whole bucket copied
        return (plan, h2d, copy, ring, reload);
    }

    [Fact]
    public void BroadcastScheduleInSeriesIsTheSumOfItsStages()
    {
        var (plan, h2d, copy, ring, reload) = TwoBuckets(overlap: false);
        Assert.Equal(new Bucketing(GiB, true, 2, 1, 2), plan.Bucketing);
        Assert.Equal(h2d + 2 * (copy + ring + reload), plan.Broadcast.TotalSeconds, 9);
        Assert.Equal(h2d, plan.Broadcast.Stage("h2d"), 9);
        Assert.Equal(2 * (copy + ring), plan.Broadcast.Stage("broadcast"), 9);
        Assert.Equal(2 * reload, plan.Broadcast.Stage("reload"), 9);
    }

    [Fact]
    public void DoubleBufferingHidesTheFirstReloadUnderTheSecondBroadcast()
    {
        var (plan, h2d, copy, ring, reload) = TwoBuckets(overlap: true);
        Assert.True(reload < copy + ring);
        Assert.Equal(h2d + 2 * (copy + ring) + reload, plan.Broadcast.TotalSeconds, 9);
        Assert.True(plan.Broadcast.TotalSeconds < TwoBuckets(overlap: false).Plan.Broadcast.TotalSeconds);
    }

    [Fact]
    public void ShardToShardSendsEachSliceOnlyWhereItIsNeeded()
    {
        // Two nodes of two ranks, tp 2 (two replicas), weights on the device: one 4 GB split tensor, held by rank 0,
        // goes 2 GB to itself, 2 GB to its neighbour over the intra-node link, 2 GB to each rank of the other node.
        var cluster = PlanningFixtures.Tiny("nodes: 1", "nodes: 2") with
        {
            Inference = new InferenceSpec(2, false, 1000, false),
            Trainer = new TrainerSpec(true, 0, WeightsOnHost: false),
        };
        var plan = UpdatePlanner.Plan(cluster, [T("w", 4_000_000_000), T("n", 1, ShardRule.Replicated)]);
        var s2s = plan.ShardToShard;
        double nic = 2 * 10e9 / 2;                                      // two 10 GB/s NICs per node, two ranks
        Assert.Equal(4e9 / nic, s2s.Stage("transfer"), 9);                // rank 0 sends 4 GB across nodes
        Assert.Equal(0, s2s.Stage("h2d"));
        Assert.Equal(2 * 2 * 1e-6, s2s.Stage("post"), 12);              // two ranks × two replicas, one write each
        Assert.Equal(4e9 / nic, s2s.TotalSeconds, 9);
        Assert.Contains("4 GB cross nodes", s2s.Notes[0]);
    }

    [Fact]
    public void ShardToShardPipelinesTheHostCopyWithTheTransfer()
    {
        var cluster = PlanningFixtures.Tiny();                            // one node, tp 1: two replicas, host weights
        var tensors = Enumerable.Range(0, 8).Select(i => T($"t{i}", GiB / 2)).ToArray();
        var plan = UpdatePlanner.Plan(cluster, tensors);
        var s2s = plan.ShardToShard;
        double h2d = 2.0 * GiB / 10e9;                                    // each sender holds 2 GiB
        double transfer = 2.0 * GiB / 5e9;                                // and sends it once to the other rank
        Assert.Equal(h2d, s2s.Stage("h2d"), 9);
        Assert.Equal(transfer, s2s.Stage("transfer"), 9);
        Assert.Equal(transfer + h2d / 2, s2s.TotalSeconds, 9);            // two 1-GiB chunks: the first copy is not hidden
    }

    [Fact]
    public void NoTensorsIsRefused() =>
        Assert.Throws<K2Exception>(() => UpdatePlanner.Plan(PlanningFixtures.Tiny(), []));
}
