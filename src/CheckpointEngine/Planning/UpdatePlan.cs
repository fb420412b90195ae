namespace K2RL.CheckpointEngine.Planning;

/// <summary>One stage of a design: the seconds it would take alone (summed over buckets) and what it moves.</summary>
public sealed record StageTime(string Stage, double Seconds, string What);

/// <summary>A design's estimate: its stages and the total along the pipeline's critical path (stages overlap).</summary>
public sealed record DesignPlan(string Design, double TotalSeconds, IReadOnlyList<StageTime> Stages, IReadOnlyList<string> Notes)
{
    public double Stage(string name) => Stages.Single(s => s.Stage == name).Seconds;
}

/// <summary>How the tensors were cut into buckets (checkpoint-engine's rule, <see cref="UpdatePlanner.BucketBytes"/>).</summary>
/// <param name="BucketBytes">the bucket size chosen.</param>
/// <param name="H2dBuffer">whether a third bucket-sized buffer lets all owners copy host to device at once.</param>
/// <param name="Buckets">buckets over all owners.</param>
/// <param name="Rounds">the most buckets one owner has: rounds of the broadcast loop.</param>
public sealed record Bucketing(long BucketBytes, bool H2dBuffer, int Buckets, int Rounds, int Owners);

/// <summary>The planner's answer for one model on one cluster.</summary>
public sealed record UpdatePlan(
    ClusterSpec Cluster,
    int Tensors,
    long TotalBytes,
    long LargestTensorBytes,
    Bucketing Bucketing,
    DesignPlan Broadcast,
    DesignPlan ShardToShard,
    IReadOnlyList<string> Assumptions);
