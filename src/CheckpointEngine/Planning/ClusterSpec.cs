using System.Globalization;
using K2RL.Common;
using K2RL.Common.Config;

namespace K2RL.CheckpointEngine.Planning;

/// <summary>A link: its published peak in GB/s (10^9 bytes), the fraction of it a transfer reaches, a hop's latency.</summary>
public sealed record LinkSpec(double GbPerS, double Efficiency, double LatencyUs)
{
    /// <summary>Bytes per second a transfer reaches.</summary>
    public double Effective => GbPerS * 1e9 * Efficiency;
}

/// <summary>The accelerator: memory it reports and its memory bandwidth (device-side copies).</summary>
public sealed record AcceleratorSpec(string Kind, double MemoryGib, double MemoryGbPerS);

/// <summary>
/// Memory for the engine's buckets: what the inference engine leaves free on each accelerator, the fraction of it the
/// checkpoint engine takes, and the bucket cap (checkpoint-engine: 0.9 of free memory, 8 GiB cap).
/// </summary>
public sealed record BucketMemorySpec(double FreeMemoryGib, double MemFraction, double CapGib);

/// <summary>
/// The inference engines that receive the weights: tensor-parallel replicas of <see cref="Tp"/> accelerators, the
/// engine's cost per tensor it loads out of a bucket, and whether that load overlaps the next bucket's broadcast.
/// </summary>
public sealed record InferenceSpec(int Tp, bool ExpertParallel, double ReloadUsPerTensor, bool OverlapReload);

/// <summary>Where the new weights start: on the inference accelerators (co-located) or on trainer nodes of their own.</summary>
public sealed record TrainerSpec(bool Colocated, int Nodes, bool WeightsOnHost);

/// <summary>The collective's pipelining (NCCL: a ring of channels moving chunks) and the per-bucket control round trip.</summary>
public sealed record BroadcastSpec(double ChunkKib, int Channels, double ControlUsPerBucket);

/// <summary>
/// A cluster as the weight-update planner sees it (configs/clusters/*.yaml). Bandwidths are published peaks times an
/// efficiency; a measured file (<see cref="MeasuredBandwidths"/>) replaces them with K2RL's own numbers.
/// </summary>
public sealed record ClusterSpec(
    string Name,
    string Source,
    int Nodes,
    int AcceleratorsPerNode,
    AcceleratorSpec Accelerator,
    LinkSpec HostToDevice,
    int HostLinkSharedBy,
    LinkSpec IntraNode,
    int NicsPerNode,
    LinkSpec InterNode,
    BucketMemorySpec Buckets,
    InferenceSpec Inference,
    TrainerSpec Trainer,
    BroadcastSpec Broadcast,
    double RdmaOpUs)
{
    /// <summary>Accelerators that run the inference engine.</summary>
    public int InferenceAccelerators => Nodes * AcceleratorsPerNode;

    /// <summary>Accelerators that hold the new weights (each a contiguous share of the tensors).</summary>
    public int TrainerAccelerators => (Trainer.Colocated ? Nodes : Trainer.Nodes) * AcceleratorsPerNode;

    /// <summary>Nodes that take part in the update (inference nodes, plus the trainer's own when not co-located).</summary>
    public int WorldNodes => Trainer.Colocated ? Nodes : Nodes + Trainer.Nodes;

    public int Replicas => InferenceAccelerators / Inference.Tp;

    /// <summary>Host-to-device bytes/s per accelerator while every accelerator copies at once (they share uplinks).</summary>
    public double HostToDeviceConcurrent => HostToDevice.Effective / HostLinkSharedBy;

    /// <summary>Network bytes/s one accelerator has (its node's NICs shared by the node's accelerators).</summary>
    public double NicPerAccelerator => NicsPerNode * InterNode.Effective / AcceleratorsPerNode;

    public static ClusterSpec Load(string path) => Read(YamlReader.Load(path));

    public static ClusterSpec Parse(string yaml, string file) => Read(YamlReader.Parse(yaml, file));

    private static ClusterSpec Read(YamlReader r)
    {
        string name = r.OptionalStr("name") ?? throw r.Missing("name");
        string source = r.Str("source", "");
        int nodes = ReqInt(r, "nodes");
        int perNode = ReqInt(r, "accelerators_per_node");

        var (accelerator, hostToDevice, sharedBy, intraNode, interNode, nics) = ReadHardware(r);
        var b = r.Section("buckets");
        var buckets = new BucketMemorySpec(Positive(b, "free_memory_gib"), Optional(b, "mem_fraction", 0.9f, 0, 1, minExclusive: true),
            Optional(b, "cap_gib", 8f, 0, minExclusive: true));
        b.RejectUnknown();

        var inf = r.Section("inference");
        var inference = new InferenceSpec(ReqInt(inf, "tp"), inf.Bool("expert_parallel", false), Required(inf, "reload_us_per_tensor", 0),
            inf.Bool("overlap_reload", false));
        inf.RejectUnknown();

        var tr = r.Section("trainer");
        bool colocated = tr.Bool("colocated", true);
        var trainer = new TrainerSpec(colocated, colocated ? 0 : ReqInt(tr, "nodes"), tr.Str("weights_in", "host", "host", "device") == "host");
        if (colocated && tr.OptionalStr("nodes") is not null)
        {
            throw new ConfigException($"{tr.At("nodes")}: \"trainer.nodes\" is only for a trainer on nodes of its own (colocated: false)");
        }

        tr.RejectUnknown();

        var bc = r.Section("broadcast");
        var broadcast = new BroadcastSpec(Optional(bc, "chunk_kib", 512f, 0, minExclusive: true), bc.Int("channels", 16, min: 1),
            Optional(bc, "control_us_per_bucket", 100f, 0));
        bc.RejectUnknown();

        var s2s = r.Section("shard_to_shard");
        double opUs = Optional(s2s, "rdma_op_us", 1f, 0);
        s2s.RejectUnknown();
        r.RejectUnknown();

        if (nodes * perNode % inference.Tp != 0)
        {
            throw new ConfigException($"{inf.At("tp")}: \"inference.tp\" = {inference.Tp} does not divide the {nodes * perNode} accelerators");
        }

        return new ClusterSpec(name, source, nodes, perNode, accelerator, hostToDevice, sharedBy, intraNode, nics, interNode,
            buckets, inference, trainer, broadcast, opUs);
    }

    // The accelerator and its links: device memory, host to device, inside a node, between nodes.
    private static (AcceleratorSpec, LinkSpec, int, LinkSpec, LinkSpec, int) ReadHardware(YamlReader r)
    {
        var acc = r.Section("accelerator");
        var accelerator = new AcceleratorSpec(acc.Str("kind", "accelerator"), Positive(acc, "memory_gib"), Positive(acc, "memory_gb_per_s"));
        acc.RejectUnknown();

        var h2d = r.Section("host_to_device");
        var hostToDevice = Link(h2d);
        int sharedBy = h2d.Int("shared_by", 1, min: 1);
        h2d.RejectUnknown();

        var intra = r.Section("intra_node");
        var intraNode = Link(intra);
        intra.RejectUnknown();

        var inter = r.Section("inter_node");
        var interNode = Link(inter);
        int nics = ReqInt(inter, "nics_per_node");
        inter.RejectUnknown();

        return (accelerator, hostToDevice, sharedBy, intraNode, interNode, nics);
    }

    private static LinkSpec Link(YamlReader r) =>
        new(Positive(r, "gb_per_s"), Optional(r, "efficiency", 1f, 0, 1, minExclusive: true), Optional(r, "latency_us", 0f, 0));

    private static double Positive(YamlReader r, string key) => Required(r, key, 0, minExclusive: true);

    private static double Required(YamlReader r, string key, double min, bool minExclusive = false)
    {
        float v = r.Float(key, float.NaN, min, minExclusive: minExclusive);
        return float.IsNaN(v) ? throw r.Missing(key) : D(v);
    }

    private static double Optional(YamlReader r, string key, float fallback, double min, double max = double.PositiveInfinity,
        bool minExclusive = false) => D(r.Float(key, fallback, min, max, minExclusive));

    // YamlReader reads floats; the shortest round-trip text of the float is the number the file wrote (0.9, not 0.8999…).
    private static double D(float v) => double.Parse(v.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    private static int ReqInt(YamlReader r, string key)
    {
        int v = r.Int(key, int.MinValue, min: int.MinValue);
        if (v == int.MinValue)
        {
            throw r.Missing(key);
        }

        return v >= 1 ? v : throw new ConfigException($"{r.At(key)}: \"{r.Prefix}{key}\" must be >= 1, got {v}");
    }

    /// <summary>This cluster with K2RL's measured bandwidths in place of the published ones (each at efficiency 1).</summary>
    public ClusterSpec With(MeasuredBandwidths m) => this with
    {
        HostToDevice = m.MemcpyGbPerS is { } memcpy ? HostToDevice with { GbPerS = memcpy, Efficiency = 1 } : HostToDevice,
        HostLinkSharedBy = m.MemcpyGbPerS is null ? HostLinkSharedBy : 1,
        Accelerator = m.MemcpyGbPerS is { } copy ? Accelerator with { MemoryGbPerS = copy } : Accelerator,
        IntraNode = m.ShmGbPerS is { } shm ? IntraNode with { GbPerS = shm, Efficiency = 1 } : IntraNode,
        InterNode = m.NetGbPerS is { } net ? InterNode with { GbPerS = net, Efficiency = 1 } : InterNode,
        NicsPerNode = m.NetGbPerS is null ? NicsPerNode : 1,
    };
}
