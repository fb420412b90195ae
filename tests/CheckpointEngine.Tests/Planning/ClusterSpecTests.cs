using K2RL.CheckpointEngine.Planning;
using K2RL.Common;
using K2RL.Tests.Shared;

namespace K2RL.CheckpointEngine.Tests.Planning;

public class ClusterSpecTests
{
    [Theory]
    [InlineData("h20x16-tp16", 16, 16, 1)]
    [InlineData("h20x256-tp16", 256, 256, 16)]
    [InlineData("h800x8-tp8", 8, 8, 1)]
    [InlineData("h200x128-rdma-from-256", 128, 256, 8)]
    [InlineData("local-cpu", 2, 2, 2)]
    public void ShippedClusterFilesLoad(string name, int inference, int trainer, int replicas)
    {
        var c = ClusterSpec.Load(Path.Combine(ExternalTools.RepoRoot(), "configs", "clusters", name + ".yaml"));
        Assert.Equal(name, c.Name);
        Assert.Equal(inference, c.InferenceAccelerators);
        Assert.Equal(trainer, c.TrainerAccelerators);
        Assert.Equal(replicas, c.Replicas);
    }

    [Fact]
    public void EveryShippedClusterFileLoads()
    {
        var files = Directory.GetFiles(Path.Combine(ExternalTools.RepoRoot(), "configs", "clusters"), "*.yaml");
        Assert.True(files.Length >= 5);
        Assert.All(files, f => Assert.Equal(Path.GetFileNameWithoutExtension(f), ClusterSpec.Load(f).Name));
    }

    [Fact]
    public void EffectiveBandwidthsArePeakTimesEfficiencyOverSharers()
    {
        var c = ClusterSpec.Load(Path.Combine(ExternalTools.RepoRoot(), "configs", "clusters", "h20x16-tp16.yaml"));
        Assert.Equal(0.9, c.Buckets.MemFraction);                        // the file's number, not the float's 0.8999…
        Assert.Equal(64e9 * 0.8 / 2, c.HostToDeviceConcurrent, 1e-3);   // PCIe Gen5 x16, two GPUs per uplink
        Assert.Equal(450e9 * 0.8, c.IntraNode.Effective, 1e-3);
        Assert.Equal(8 * 50e9 * 0.9 / 8, c.NicPerAccelerator, 1e-3);
    }

    [Theory]
    [InlineData("  cap_gib: 1", "  cap_gb: 1", "tiny.yaml:25:3", "unknown key \"buckets.cap_gb\"")]
    [InlineData("nodes: 1", "nodes: 1\nnode_count: 2", "tiny.yaml:4:1", "unknown key \"node_count\"")]
    [InlineData("  gb_per_s: 5", "  gb_per_s: fast", "tiny.yaml:14:13", "\"intra_node.gb_per_s\" must be a number, got \"fast\"")]
    [InlineData("  gb_per_s: 5", "  gb_per_s: 0", "tiny.yaml:14:13", "\"intra_node.gb_per_s\" must be > 0")]
    [InlineData("  gb_per_s: 10\n  efficiency: 1\n  shared_by", "  gb_per_s: -3\n  efficiency: 1\n  shared_by", "tiny.yaml:10:13", "\"host_to_device.gb_per_s\" must be > 0")]
    [InlineData("  efficiency: 1\n  shared_by", "  efficiency: 1.5\n  shared_by", "tiny.yaml:11:15", "\"host_to_device.efficiency\" must be > 0 and <= 1")]
    [InlineData("  memory_gb_per_s: 100\n", "", "tiny.yaml:6:3", "required key \"accelerator.memory_gb_per_s\"")]
    [InlineData("  tp: 1", "  tp: 3", "tiny.yaml:27:3", "\"inference.tp\" = 3 does not divide the 2 accelerators")]
    [InlineData("  tp: 1", "  tp: 0", "tiny.yaml:27:3", "\"inference.tp\" must be >= 1")]
    [InlineData("  tp: 1", "  tp: [1]", "tiny.yaml:27:7", "\"inference.tp\" must be an integer")]
    [InlineData("accelerators_per_node: 2\n", "", "tiny.yaml:1:1", "required key \"accelerators_per_node\"")]
    [InlineData("  colocated: true", "  colocated: true\n  nodes: 4", "tiny.yaml:33:3", "only for a trainer on nodes of its own")]
    [InlineData("  colocated: true", "  colocated: false", "tiny.yaml:32:3", "required key \"trainer.nodes\"")]
    [InlineData("  weights_in: host", "  weights_in: disk", "tiny.yaml:33:15", "must be one of host, device")]
    [InlineData("  free_memory_gib: 100", "  free_memory_gib: 0", "tiny.yaml:23:20", "\"buckets.free_memory_gib\" must be > 0")]
    [InlineData("inter_node:", "inter_node: 5\nxinter_node:", "tiny.yaml:17:13", "\"inter_node\" must be a mapping")]
    public void BadClusterFilesAreRefusedWithFileLineAndKey(string replace, string with, string at, string message)
    {
        var e = Assert.Throws<ConfigException>(() => PlanningFixtures.Tiny(replace, with));
        Assert.StartsWith(at, e.Message);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void MeasuredBandwidthsReplaceTheFilesFiguresAtFullEfficiency()
    {
        var c = PlanningFixtures.Tiny().With(new MeasuredBandwidths(2.5, null, 0.5));
        Assert.Equal(2.5e9, c.HostToDeviceConcurrent, 1e-3);
        Assert.Equal(2.5, c.Accelerator.MemoryGbPerS);
        Assert.Equal(5e9, c.IntraNode.Effective, 1e-3);                  // shm not measured: the file's figure stays
        Assert.Equal(0.5e9, c.NicsPerNode * c.InterNode.Effective, 1e-3);
    }
}
