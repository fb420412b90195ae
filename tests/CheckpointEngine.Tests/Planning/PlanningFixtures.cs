using K2RL.CheckpointEngine.Planning;

namespace K2RL.CheckpointEngine.Tests.Planning;

/// <summary>Small clusters with round numbers, so the planner's answers can be worked out by hand.</summary>
internal static class PlanningFixtures
{
    /// <summary>A valid cluster file; tests break one line of it at a time.</summary>
    public const string Yaml = """
        name: tiny
        source: a test
        nodes: 1
        accelerators_per_node: 2
        accelerator:
          kind: test
          memory_gib: 100
          memory_gb_per_s: 100
        host_to_device:
          gb_per_s: 10
          efficiency: 1
          shared_by: 1
        intra_node:
          gb_per_s: 5
          efficiency: 1
          latency_us: 0
        inter_node:
          nics_per_node: 2
          gb_per_s: 10
          efficiency: 1
          latency_us: 0
        buckets:
          free_memory_gib: 100
          mem_fraction: 0.9
          cap_gib: 1
        inference:
          tp: 1
          expert_parallel: false
          reload_us_per_tensor: 1000
          overlap_reload: false
        trainer:
          colocated: true
          weights_in: host
        broadcast:
          chunk_kib: 1
          channels: 1
          control_us_per_bucket: 0
        shard_to_shard:
          rdma_op_us: 1
        """;

    public static ClusterSpec Tiny(string? replace = null, string? with = null) =>
        ClusterSpec.Parse(replace is null ? Yaml : Replace(Yaml, replace, with!), "tiny.yaml");

    public static string Replace(string text, string what, string with) =>
        text.Contains(what, StringComparison.Ordinal) ? text.Replace(what, with, StringComparison.Ordinal) : throw new ArgumentException(what);
}
