using System.CommandLine;
using System.Text.Json.Nodes;
using K2RL.CheckpointEngine.Planning;
using K2RL.Common;
using K2RL.Model;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl ckpt plan --model CONFIG --cluster CLUSTER.yaml [--bandwidths FILE.json] [--dtype fp8|bf16|f32] [--json]</c>:
/// bucket size, pipeline schedule and update time of a weight update, broadcast and shard-to-shard
/// (<see cref="UpdatePlanner"/>, docs/CKPT_PLANNER.md).
/// </summary>
public sealed class CkptPlanCommand : ICommandProvider
{
    public string Group => "ckpt";

    internal sealed record PlanOptions(string Model, string Cluster, string? Bandwidths, string DType, bool Json);

    public IEnumerable<Command> Build(CliContext context)
    {
        var model = new Option<string>("--model") { Description = "Model config (Hugging Face config.json keys), e.g. configs/models/kimi-k2.json", Required = true };
        var cluster = new Option<string>("--cluster") { Description = "Cluster description, e.g. configs/clusters/h20x16-tp16.yaml", Required = true };
        var bandwidths = new Option<string?>("--bandwidths")
        {
            Description = "Measured bandwidths (`k2rl bench broadcast --json` output: memcpy_gb_per_s, shm_gb_per_s, net_gb_per_s) replacing the cluster file's",
        };
        var dtype = new Option<string>("--dtype") { Description = "Dtype the engine receives: fp8 (default, as K2 ships), bf16 or f32", DefaultValueFactory = _ => "fp8" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var command = new Command("plan", "Plan a weight update: bucket size, pipeline and time for the broadcast and shard-to-shard designs")
        {
            model, cluster, bandwidths, dtype, json,
        };
        command.SetAction(r => Run(context, new PlanOptions(r.GetValue(model)!, r.GetValue(cluster)!, r.GetValue(bandwidths), r.GetValue(dtype)!, r.GetValue(json))));
        yield return command;
    }

    internal static int Run(CliContext context, PlanOptions o)
    {
        if (!CkptTensors.DTypes.Contains(o.DType))
        {
            throw new K2Exception($"--dtype \"{o.DType}\" is not supported (one of: {string.Join(", ", CkptTensors.DTypes)})");
        }

        var cluster = ClusterSpec.Load(o.Cluster);
        var measured = o.Bandwidths is null ? null : MeasuredBandwidths.Load(o.Bandwidths);
        if (measured is not null)
        {
            cluster = cluster.With(measured);
        }

        var tensors = CkptTensors.Build(ModelConfig.Load(o.Model), o.DType);
        var plan = UpdatePlanner.Plan(cluster, tensors);
        var assumptions = new List<string> { $"model {o.Model}: " + CkptTensors.Describe(o.DType) };
        assumptions.AddRange(plan.Assumptions);
        if (measured is not null)
        {
            assumptions.Add($"measured bandwidths from {o.Bandwidths} replace the cluster file's: " + string.Join(", ",
                new[] { ("memcpy", measured.MemcpyGbPerS), ("shm", measured.ShmGbPerS), ("net", measured.NetGbPerS) }
                    .Where(m => m.Item2 is not null).Select(m => $"{m.Item1} {m.Item2:0.###} GB/s")));
        }

        if (o.Json)
        {
            context.Out.WriteLine(Json(o, plan, measured, assumptions).ToJsonString());
        }
        else
        {
            WriteTable(context.Out, o, plan, assumptions);
        }

        return 0;
    }

    private static JsonObject Json(PlanOptions o, UpdatePlan plan, MeasuredBandwidths? measured, List<string> assumptions) => new()
    {
        ["model"] = o.Model,
        ["cluster"] = o.Cluster,
        ["cluster_name"] = plan.Cluster.Name,
        ["dtype"] = o.DType,
        ["tensors"] = plan.Tensors,
        ["total_bytes"] = plan.TotalBytes,
        ["largest_tensor_bytes"] = plan.LargestTensorBytes,
        ["bucket_bytes"] = plan.Bucketing.BucketBytes,
        ["buckets"] = plan.Bucketing.Buckets,
        ["rounds"] = plan.Bucketing.Rounds,
        ["h2d_buffer"] = plan.Bucketing.H2dBuffer,
        ["weight_holders"] = plan.Bucketing.Owners,
        ["broadcast"] = Design(plan.Broadcast),
        ["shard_to_shard"] = Design(plan.ShardToShard),
        ["measured_bandwidths"] = measured is null ? null : new JsonObject
        {
            ["memcpy_gb_per_s"] = measured.MemcpyGbPerS,
            ["shm_gb_per_s"] = measured.ShmGbPerS,
            ["net_gb_per_s"] = measured.NetGbPerS,
        },
        ["assumptions"] = new JsonArray(assumptions.Select(a => (JsonNode?)a).ToArray()),
    };

    private static JsonObject Design(DesignPlan d)
    {
        var stages = new JsonObject();
        foreach (var s in d.Stages)
        {
            stages[s.Stage + "_s"] = Math.Round(s.Seconds, 4);
        }

        return new JsonObject
        {
            ["total_s"] = Math.Round(d.TotalSeconds, 4),
            ["stages"] = stages,
            ["notes"] = new JsonArray(d.Notes.Select(n => (JsonNode?)n).ToArray()),
        };
    }

    private static void WriteTable(TextWriter w, PlanOptions o, UpdatePlan plan, List<string> assumptions)
    {
        var b = plan.Bucketing;
        w.WriteLine($"weight update of {o.Model} ({o.DType}) on {plan.Cluster.Name} ({o.Cluster})");
        w.WriteLine($"  {plan.Tensors:N0} tensors, {plan.TotalBytes / 1e9:N2} GB, largest {plan.LargestTensorBytes / 1e6:N1} MB");
        w.WriteLine($"  bucket {b.BucketBytes / (double)UpdatePlanner.GiB:0.00} GiB: {b.Buckets:N0} buckets from {b.Owners} holder(s) in {b.Rounds} round(s)");
        w.WriteLine();
        w.WriteLine($"  {"design",-16}{"stage",-12}{"seconds",10}  what");
        foreach (var d in new[] { plan.Broadcast, plan.ShardToShard })
        {
            foreach (var s in d.Stages)
            {
                w.WriteLine($"  {d.Design,-16}{s.Stage,-12}{s.Seconds,10:0.000}  {s.What}");
            }

            w.WriteLine($"  {d.Design,-16}{"TOTAL",-12}{d.TotalSeconds,10:0.000}  critical path (stages overlap)");
            foreach (var n in d.Notes)
            {
                w.WriteLine($"  {"",-28}  {n}");
            }
        }

        w.WriteLine();
        w.WriteLine("assumptions:");
        foreach (var a in assumptions)
        {
            w.WriteLine($"  - {a}");
        }
    }
}
