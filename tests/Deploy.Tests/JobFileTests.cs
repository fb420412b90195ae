using K2RL.Gym;
using K2RL.Tests.Shared;
using K2RL.Trainer.Rl;
using YamlDotNet.RepresentationModel;

namespace K2RL.Deploy.Tests;

/// <summary>
/// The RL job file the trainer reads from the ConfigMap: it passes the real job parser, it is configs/jobs/rl-nano.yaml
/// but for the base and the scale-out settings, and those agree with the pods (Redis URL, weight transport, base).
/// </summary>
public class JobFileTests
{
    private static DeployManifests M => DeployManifests.Repo;

    internal static string JobText => M.ConfigMap("k2rl-rl-job").Data["rl.yaml"];

    internal static RlJobConfig Parse(string text, string file) =>
        RlJobConfig.Parse(text, file, GymRegistry.CreateDefault().Environments.Select(e => e.Name).ToArray(), SyntheticCorpus.CreateDefault().Kinds,
            initFrom: ExternalTools.RepoRoot());

    [Fact]
    public void TheConfigMapsJobPassesTheRlJobParser()
    {
        // Before the redis branch is merged, the parser has no rollout.workers nor rollout.transport: this fails until
        // then, naming the key it rejects.
        // Blank lines in front, so an error's line number is trainer.yaml's (its column is 4 less: the block's indent).
        int before = File.ReadAllLines(Path.Combine(M.Root, "trainer.yaml")).TakeWhile(l => l != "  rl.yaml: |").Count() + 1;
        var job = Parse(new string('\n', before) + JobText, "deploy/k8s/trainer.yaml");
        Assert.Equal(250, job.Iterations);
        Assert.Equal(0, job.IterationTokenBudget);
    }

    [Fact]
    public void TheJobIsRlNanoButForTheBaseAndTheScaleOutSettings()
    {
        var deployed = Load(JobText);
        var shipped = Load(File.ReadAllText(Path.Combine(ExternalTools.RepoRoot(), "configs/jobs/rl-nano.yaml")));
        Assert.Equal(Canonical(WithoutScaleOut(shipped)), Canonical(WithoutScaleOut(deployed)));
    }

    /// <summary>The job without init_from and the rollout section's scale-out keys (workers, transport, shm_name).</summary>
    internal static YamlMappingNode WithoutScaleOut(YamlMappingNode doc)
    {
        doc.Children.Remove(new YamlScalarNode("init_from"));
        var rollout = (YamlMappingNode)doc.Children[new YamlScalarNode("rollout")];
        foreach (string key in new[] { "workers", "transport", "shm_name" })
        {
            rollout.Children.Remove(new YamlScalarNode(key));
        }

        return doc;
    }

    [Fact]
    public void TheJobsRolloutAndBaseAgreeWithThePods()
    {
        var doc = Load(JobText);
        var rollout = (YamlMappingNode)doc.Children[new YamlScalarNode("rollout")];
        var (_, worker) = ContainerArgsTests.Find("k2rl-rollout-worker", "worker");
        string[] workerArgs = ContainerArgsTests.Expand(worker);
        Assert.Equal(ContainerArgsTests.Value(workerArgs, "--redis"), Scalar(rollout, "workers"));
        Assert.Equal(ContainerArgsTests.Value(workerArgs, "--weights"), Scalar(rollout, "transport"));

        // init_from is what the trainer pod's init container pretrains, on the volume the trainer mounts too
        var (trainerPod, baseContainer) = ContainerArgsTests.Find("k2rl-trainer", "base");
        string initFrom = Scalar(doc, "init_from");
        Assert.Equal(ContainerArgsTests.Value(ContainerArgsTests.Expand(baseContainer), "--run-dir"), initFrom);
        var (_, trainer) = ContainerArgsTests.Find("k2rl-trainer", "trainer");
        Assert.Equal(ContainerArgsTests.VolumeAt(trainerPod, baseContainer, initFrom, out _).Name,
            ContainerArgsTests.VolumeAt(trainerPod, trainer, initFrom, out _).Name);
    }

    internal static YamlMappingNode Load(string text)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(text));
        return (YamlMappingNode)stream.Documents.Single().RootNode;
    }

    internal static string Scalar(YamlMappingNode map, string key) => ((YamlScalarNode)map.Children[new YamlScalarNode(key)]).Value!;

    /// <summary>The node's content as text, keys sorted, style (flow or block, comments) ignored.</summary>
    internal static string Canonical(YamlNode node) => node switch
    {
        YamlScalarNode s => s.Value ?? "~",
        YamlSequenceNode q => "[" + string.Join(", ", q.Children.Select(Canonical)) + "]",
        YamlMappingNode m => "{" + string.Join(", ", m.Children.Select(kv => $"{Canonical(kv.Key)}: {Canonical(kv.Value)}").Order(StringComparer.Ordinal)) + "}",
        _ => throw new InvalidDataException($"unexpected YAML node {node.NodeType}"),
    };
}
