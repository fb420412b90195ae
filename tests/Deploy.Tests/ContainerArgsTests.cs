using System.Text.RegularExpressions;
using k8s.Models;
using K2RL.Cli;
using K2RL.Tests.Shared;

namespace K2RL.Deploy.Tests;

/// <summary>
/// The k2rl containers' command lines: parsed by the real CLI parser (CliApp), after Kubernetes' $(VAR) expansion, and
/// their values checked against the manifests (ports declared, files on mounted volumes, the Redis Service).
/// </summary>
public class ContainerArgsTests
{
    private static DeployManifests M => DeployManifests.Repo;

    /// <summary>(workload, container) of every container that runs the k2rl image.</summary>
    public static TheoryData<string, string> K2rlContainers()
    {
        var data = new TheoryData<string, string>();
        foreach (var w in M.Workloads)
        {
            foreach (var c in w.AllContainers.Where(ManifestTests.IsK2rl))
            {
                data.Add(w.Name, c.Name);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(K2rlContainers))]
    public void ArgsParseWithTheRealCli(string workload, string container)
    {
        // Before the scale-out branches are merged, `rl` lacks --control, --control-token-file and --metrics and there is no
        // `rollout-worker` command: the trainer's and the workers' cases fail here, naming what the parser rejects.
        var (_, c) = Find(workload, container);
        string[] args = Expand(c);
        var parse = CliApp.BuildRoot(new CliContext(TextWriter.Null, TextWriter.Null)).Parse(args);
        Assert.True(parse.Errors.Count == 0,
            $"{workload}/{container}: `k2rl {string.Join(' ', args)}` does not parse: {string.Join("; ", parse.Errors.Select(e => e.Message))}");
    }

    [Fact]
    public async Task TheTrainerJobFailsAtOnceOnTheCliUsageErrorCode()
    {
        // podFailurePolicy: a wrong command line is not retried; the code is the one CliApp returns for it
        int usage = await CliApp.RunAsync(["rl", "--no-such-flag"], new CliContext(TextWriter.Null, TextWriter.Null));
        var job = M.All<V1Job>().Single();
        var failJob = job.Spec.PodFailurePolicy.Rules.Single(r => r.Action == "FailJob").OnExitCodes;
        Assert.Equal("In", failJob.OperatorProperty);
        Assert.Contains(usage, failJob.Values);
        Assert.Contains(130, failJob.Values);                // stopped (k2rl job stop, SIGTERM): checkpointed, stays stopped
        Assert.Equal("Never", job.Spec.Template.Spec.RestartPolicy);   // what podFailurePolicy requires
        Assert.Equal("Ignore", job.Spec.PodFailurePolicy.Rules.Single(r => r.OnPodConditions?.Any(c => c.Type == "DisruptionTarget") == true).Action);
    }

    [Fact]
    public void ThePodsArgumentsOnlyUseTheirOwnEnv()
    {
        foreach (var w in M.Workloads)
        {
            foreach (var c in w.AllContainers.Where(ManifestTests.IsK2rl))
            {
                Assert.All(Expand(c), a => Assert.DoesNotContain("$(", a));
            }
        }

        Assert.Throws<InvalidOperationException>(() => Expand(new V1Container { Name = "x", Args = ["--listen", "$(POD_IPP):7071"] }));
    }

    [Fact]
    public void TheTrainerServesControlAndMetricsOnItsDeclaredPortsWithAToken()
    {
        var (w, c) = Find("k2rl-trainer", "trainer");
        string[] args = Expand(c);
        Assert.Equal("rl", args[0]);
        Assert.Equal("0.0.0.0:7070", Value(args, "--control"));       // the contract: control 7070, metrics 9400
        Assert.Equal("0.0.0.0:9400", Value(args, "--metrics"));
        AssertPortDeclared(c, Value(args, "--control"), "grpc-control");
        AssertPortDeclared(c, Value(args, "--metrics"), "metrics");
        Assert.Equal(7070, c.ReadinessProbe.Grpc.Port);
        Assert.Contains("--resume", args);

        // a non-loopback control address needs the token: a file on the Secret's volume
        string token = Value(args, "--control-token-file");
        Assert.Equal("/secrets/control-token", token);
        var volume = VolumeAt(w, c, token, out string inVolume);
        Assert.NotNull(volume.Secret);
        Assert.Contains(volume.Secret.Items, i => i.Path == inVolume);
        Assert.Contains(volume.Secret.Items.Single(i => i.Path == inVolume).Key, M.Secrets[volume.Secret.SecretName]);

        // the job file from the ConfigMap, at /config/rl.yaml; the run directory on the claim
        string job = Value(args, "--job");
        Assert.Equal("/config/rl.yaml", job);
        var jobVolume = VolumeAt(w, c, job, out string jobInVolume);
        Assert.Contains(jobVolume.ConfigMap.Items, i => i.Path == jobInVolume);
        Assert.Equal("/runs/rl", Value(args, "--run-dir"));
        Assert.NotNull(VolumeAt(w, c, "/runs/rl", out _).PersistentVolumeClaim);
    }

    [Fact]
    public void WorkersListenOnTheirPodIpAndReachRedisThroughItsService()
    {
        var (_, c) = Find("k2rl-rollout-worker", "worker");
        string[] args = Expand(c);
        Assert.Equal("rollout-worker", args[0]);
        Assert.Equal("net", Value(args, "--weights"));
        // the trainer pushes weights to the address a worker registers: its own pod IP, from the Downward API
        Assert.Equal("$(POD_IP):7071", c.Args[Array.IndexOf(args, "--listen") + 1]);
        Assert.Equal("status.podIP", c.Env.Single(e => e.Name == "POD_IP").ValueFrom.FieldRef.FieldPath);
        AssertPortDeclared(c, Value(args, "--listen"), "grpc");
        AssertPortDeclared(c, Value(args, "--metrics"), "metrics");
        Assert.Equal("0.0.0.0:9401", Value(args, "--metrics"));
        // the data lane, a fixed port (a free one would not be in the NetworkPolicy), open to K2RL's pods like the receiver
        string lane = Value(args, "--data-lane-port");
        Assert.Equal(7072, CheckpointEngine.NetworkReceiverOptions.ParseDataLanePort(lane));
        AssertPortDeclared(c, "x:" + lane, "data-lane");
        var policy = M.All<V1NetworkPolicy>().Single(p => p.Metadata.Name == "k2rl-rollout-worker");
        Assert.Contains(policy.Spec.Ingress, rule => rule.FromProperty?.Count > 0 && rule.Ports.Any(p => p.Port.Value == lane) &&
            rule.Ports.Any(p => p.Port.Value == "7071"));
        Assert.Equal(7071, c.ReadinessProbe.Grpc.Port);

        var redis = new Uri(Value(args, "--redis"));
        Assert.Equal("redis", redis.Scheme);
        var service = M.All<V1Service>().Single(s => s.Metadata.Name == redis.Host);
        Assert.Contains(service.Spec.Ports, p => p.Port == redis.Port);
        Assert.Contains(M.Workloads, w => DeployManifests.Selects(service.Spec.Selector, w.Template.Metadata.Labels) && w.Name == "redis");
    }

    [Fact]
    public void RedisRequiresThePasswordThatTheTrainerAndTheWorkersRead()
    {
        var (_, redis) = Find("redis", "redis");
        int i = redis.Args.IndexOf("--requirepass");
        Assert.True(i >= 0 && i + 1 < redis.Args.Count, "redis-server runs without --requirepass");
        Assert.Equal("$(REDIS_PASSWORD)", redis.Args[i + 1]);
        var secret = redis.Env.Single(e => e.Name == "REDIS_PASSWORD").ValueFrom.SecretKeyRef;
        Assert.NotNull(secret);
        // the readiness probe's redis-cli authenticates too (else a locked server never becomes ready)
        Assert.Contains("REDISCLI_AUTH=\"$REDIS_PASSWORD\"", string.Join(' ', redis.ReadinessProbe.Exec.Command));
        foreach (var (workload, container) in new[] { ("k2rl-trainer", "trainer"), ("k2rl-rollout-worker", "worker") })
        {
            var (_, c) = Find(workload, container);
            var env = c.Env?.SingleOrDefault(e => e.Name == K2RL.Common.Redis.RedisConnection.PasswordVariable);
            Assert.True(env?.ValueFrom?.SecretKeyRef is { } key && key.Name == secret.Name && key.Key == secret.Key,
                $"{workload}: {K2RL.Common.Redis.RedisConnection.PasswordVariable} must come from Secret {secret.Name}/{secret.Key}, as Redis's password does");
        }
    }

    [Fact]
    public void RelativePathsInArgsExistInTheImagesConfigs()
    {
        foreach (var w in M.Workloads)
        {
            foreach (var a in w.AllContainers.Where(ManifestTests.IsK2rl).SelectMany(Expand).Where(a => a.StartsWith("configs/", StringComparison.Ordinal)))
            {
                Assert.True(File.Exists(Path.Combine(ExternalTools.RepoRoot(), a)), $"{w}: {a} is not in configs/ (the image copies configs/ into its working directory)");
            }
        }
    }

    /// <summary>The container's args with Kubernetes' $(VAR) expansion from its env (Downward API fields get sample values).</summary>
    internal static string[] Expand(V1Container c) =>
        (c.Args ?? []).Select(a => Regex.Replace(a, @"\$\((\w+)\)", m =>
        {
            var env = c.Env?.SingleOrDefault(e => e.Name == m.Groups[1].Value)
                ?? throw new InvalidOperationException($"container {c.Name}: {a} refers to $({m.Groups[1].Value}), which is not in its env (Kubernetes would pass it on literally)");
            return env.Value ?? env.ValueFrom?.FieldRef?.FieldPath switch
            {
                "status.podIP" => "10.1.2.3",
                "metadata.name" => "k2rl-rollout-worker-5d8f7-x2x9q",
                var other => throw new InvalidOperationException($"container {c.Name}: no sample value for env {env.Name} ({other})"),
            };
        })).ToArray();

    internal static (Workload, V1Container) Find(string workload, string container)
    {
        var w = M.Workload(workload);
        return (w, w.AllContainers.Single(c => c.Name == container));
    }

    internal static string Value(string[] args, string flag)
    {
        int i = Array.IndexOf(args, flag);
        Assert.True(i >= 0 && i + 1 < args.Length, $"no {flag} VALUE in `{string.Join(' ', args)}`");
        return args[i + 1];
    }

    /// <summary>The volume mounted at the longest mount path that holds <paramref name="path"/>, and the path inside it.</summary>
    internal static V1Volume VolumeAt(Workload w, V1Container c, string path, out string inVolume)
    {
        var mount = c.VolumeMounts.Where(m => path == m.MountPath || path.StartsWith(m.MountPath.TrimEnd('/') + "/", StringComparison.Ordinal))
            .MaxBy(m => m.MountPath.Length);
        Assert.True(mount is not null, $"{w}: {path} is on no volume of container {c.Name}");
        inVolume = path[mount.MountPath.Length..].TrimStart('/');
        string name = mount.Name;
        return w.Template.Spec.Volumes.Single(v => v.Name == name);
    }

    private static void AssertPortDeclared(V1Container c, string hostPort, string portName)
    {
        int port = int.Parse(hostPort[(hostPort.LastIndexOf(':') + 1)..]);
        Assert.True(c.Ports.Any(p => p.Name == portName && p.ContainerPort == port), $"container {c.Name}: {hostPort} is not its declared port {portName}");
    }
}
