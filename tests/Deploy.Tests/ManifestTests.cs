using k8s.Models;
using K2RL.Tests.Shared;

namespace K2RL.Deploy.Tests;

/// <summary>
/// deploy/k8s: every document deserializes strictly with KubernetesClient's typed models, and the references between
/// documents hold (selectors, ports, volumes, ConfigMaps, Secrets, claims, probes). What kubectl would only find on a
/// cluster, found here.
/// </summary>
public class ManifestTests
{
    private static DeployManifests M => DeployManifests.Repo;

    [Fact]
    public void TheKustomizationListsEveryManifestAndItsGeneratedFilesAreNotInGit()
    {
        var files = Directory.GetFiles(M.Root, "*.yaml").Select(Path.GetFileName).Where(f => f != "kustomization.yaml").Order();
        Assert.Equal(files, M.Kustomization.Resources.Order());
        Assert.Equal("kustomize.config.k8s.io/v1beta1", M.Kustomization.ApiVersion);
        Assert.Equal("Kustomization", M.Kustomization.Kind);
        string[] ignored = File.ReadAllLines(Path.Combine(M.Root, ".gitignore"));
        foreach (var file in M.Kustomization.SecretGenerator.SelectMany(g => g.Files).Select(f => f.Contains('=') ? f[(f.IndexOf('=') + 1)..] : f))
        {
            Assert.Contains(file, ignored);
        }

        // One name for the Secret, with `kubectl apply -k` (generated) and `kubectl create secret` alike: no hash suffix.
        Assert.All(M.Kustomization.SecretGenerator, g => Assert.True(g.Options?.DisableNameSuffixHash, g.Name));
    }

    [Fact]
    public void EveryDocumentIsATypedObjectInTheNamespace()
    {
        Assert.True(M.Documents.Count >= 10, $"{M.Documents.Count} documents");
        string ns = M.Kustomization.Namespace;
        Assert.Equal(ns, M.All<V1Namespace>().Single().Metadata.Name);
        foreach (var (file, o) in M.Documents.Where(d => d.Object is not V1Namespace))
        {
            var meta = ((IMetadata<V1ObjectMeta>)o).Metadata;
            Assert.True(meta.NamespaceProperty == ns, $"{file}: {o.GetType().Name}/{meta.Name} is in namespace '{meta.NamespaceProperty}', not {ns}");
            Assert.True(meta.Labels?.ContainsKey("app.kubernetes.io/part-of") == true, $"{file}: {meta.Name} has no part-of label");
        }

        Assert.Equal(["Deployment/k2rl-rollout-worker", "Job/k2rl-trainer", "StatefulSet/redis"],
            M.Workloads.Select(w => $"{w.Kind}/{w.Name}").Order());
        Assert.Equal(2, M.All<V1Deployment>().Single().Spec.Replicas);
        Assert.Equal(1, M.All<V1StatefulSet>().Single().Spec.Replicas);
    }

    [Fact]
    public void AMisspelledOrUnknownFieldFailsNamingTheFileAndField()
    {
        string text = File.ReadAllText(Path.Combine(M.Root, "trainer.yaml"));
        using var dir = new TempFolder();
        foreach (var (good, bad, named) in new[]
                 {
                     ("targetPort: grpc-control", "targetPrt: grpc-control", "targetPrt"),       // a Service port
                     ("containerPort: 7070", "containerport: 7070", "containerport"),           // a container port, wrong case
                     ("        - name: trainer\n", "        - name: trainer\n          stdinn: false\n", "stdinn"),
                     ("kind: PersistentVolumeClaim", "kind: PersistentVolumeClaimm", "PersistentVolumeClaimm"),
                 })
        {
            Assert.Contains(good, text);
            string file = Path.Combine(dir.Path, "trainer.yaml");
            File.WriteAllText(file, text.Replace(good, bad));
            var e = Assert.Throws<InvalidDataException>(() => DeployManifests.LoadFile(file));
            Assert.Contains(file, e.Message);
            Assert.Contains(named, e.Message);
        }

        // and the untouched file loads
        File.WriteAllText(Path.Combine(dir.Path, "trainer.yaml"), text);
        Assert.Equal(4, DeployManifests.LoadFile(Path.Combine(dir.Path, "trainer.yaml")).Count);
    }

    [Fact]
    public void AnUnknownKustomizationFieldFails()
    {
        using var dir = new TempFolder();
        string file = Path.Combine(dir.Path, "kustomization.yaml");
        File.WriteAllText(file, File.ReadAllText(Path.Combine(M.Root, "kustomization.yaml")).Replace("resources:", "resource:"));
        var e = Assert.Throws<InvalidDataException>(() => DeployManifests.ReadKustomization(file));
        Assert.Contains("resource", e.Message);
    }

    [Fact]
    public void WorkloadSelectorsSelectTheirOwnPods()
    {
        foreach (var w in M.Workloads.Where(w => w.Kind != "Job"))
        {
            Assert.True(DeployManifests.Selects(w.Selector?.MatchLabels, w.Template.Metadata.Labels), $"{w}: its selector does not match its pod labels");
        }

        foreach (var s in M.All<V1StatefulSet>())
        {
            var governing = M.All<V1Service>().SingleOrDefault(x => x.Metadata.Name == s.Spec.ServiceName);
            Assert.True(governing?.Spec.ClusterIP == "None", $"StatefulSet {s.Metadata.Name}: serviceName {s.Spec.ServiceName} is not a headless Service here");
        }
    }

    [Fact]
    public void EveryServiceSelectsPodsThatHaveItsTargetPorts()
    {
        foreach (var service in M.All<V1Service>())
        {
            string name = service.Metadata.Name;
            var pods = M.Workloads.Where(w => DeployManifests.Selects(service.Spec.Selector, w.Template.Metadata.Labels)).ToArray();
            Assert.True(pods.Length > 0, $"Service {name}: its selector matches no workload's pods");
            foreach (var port in service.Spec.Ports)
            {
                string target = port.TargetPort?.Value ?? port.Port.ToString();
                Assert.All(pods, w => Assert.True(HasPort(w.Template.Spec.Containers, target),
                    $"Service {name}: targetPort {target} is no container port of {w}"));
            }
        }
    }

    [Fact]
    public void NetworkPoliciesSelectPodsAndAdmitTheirPorts()
    {
        foreach (var policy in M.All<V1NetworkPolicy>())
        {
            var pods = M.Workloads.Where(w => DeployManifests.Selects(policy.Spec.PodSelector.MatchLabels, w.Template.Metadata.Labels)).ToArray();
            Assert.True(pods.Length > 0, $"NetworkPolicy {policy.Metadata.Name} selects no pods");
            foreach (var port in policy.Spec.Ingress.SelectMany(i => i.Ports ?? []))
            {
                Assert.All(pods, w => Assert.True(HasPort(w.Template.Spec.Containers, port.Port.Value), $"NetworkPolicy {policy.Metadata.Name}: port {port.Port.Value} on {w}"));
            }

            foreach (var from in policy.Spec.Ingress.SelectMany(i => i.FromProperty ?? []).Where(f => f.PodSelector is not null))
            {
                Assert.True(M.Workloads.Any(w => DeployManifests.Selects(from.PodSelector.MatchLabels, w.Template.Metadata.Labels)),
                    $"NetworkPolicy {policy.Metadata.Name}: a 'from' selector admits no pod of these manifests");
            }
        }
    }

    [Fact]
    public void EveryVolumeMountNamesADeclaredVolumeAndEveryVolumeIsUsed()
    {
        foreach (var w in M.Workloads)
        {
            var declared = (w.Template.Spec.Volumes ?? []).Select(v => v.Name).Concat(w.ClaimTemplates.Select(c => c.Metadata.Name)).ToArray();
            Assert.Equal(declared.Length, declared.Distinct().Count());
            var mounted = new HashSet<string>();
            foreach (var c in w.AllContainers)
            {
                foreach (var m in c.VolumeMounts ?? [])
                {
                    Assert.True(declared.Contains(m.Name), $"{w}: container {c.Name} mounts {m.Name}, which is no volume or claim template");
                    mounted.Add(m.Name);
                }
            }

            Assert.All(declared, v => Assert.True(mounted.Contains(v), $"{w}: volume {v} is mounted by no container"));
        }
    }

    [Fact]
    public void EveryReferencedConfigMapSecretAndClaimIsDefinedWithItsKeys()
    {
        var configMaps = M.All<V1ConfigMap>().ToDictionary(c => c.Metadata.Name);
        var claims = M.All<V1PersistentVolumeClaim>().Select(c => c.Metadata.Name).ToHashSet();
        foreach (var w in M.Workloads)
        {
            foreach (var v in w.Template.Spec.Volumes ?? [])
            {
                if (v.ConfigMap is { } cm)
                {
                    Assert.True(configMaps.TryGetValue(cm.Name, out var map), $"{w}: volume {v.Name} names ConfigMap {cm.Name}, which is not defined");
                    Assert.All(cm.Items ?? [], i => Assert.True(map!.Data.ContainsKey(i.Key), $"{w}: ConfigMap {cm.Name} has no key {i.Key}"));
                }

                if (v.Secret is { } s)
                {
                    Assert.True(M.Secrets.TryGetValue(s.SecretName, out var keys), $"{w}: volume {v.Name} names Secret {s.SecretName}, which is not defined");
                    Assert.All(s.Items ?? [], i => Assert.True(keys!.Contains(i.Key), $"{w}: Secret {s.SecretName} has no key {i.Key}"));
                }

                if (v.PersistentVolumeClaim is { } pvc)
                {
                    Assert.True(claims.Contains(pvc.ClaimName), $"{w}: volume {v.Name} names claim {pvc.ClaimName}, which is not defined");
                }
            }

            foreach (var env in w.AllContainers.SelectMany(c => c.Env ?? []).Where(e => e.ValueFrom is not null))
            {
                if (env.ValueFrom.ConfigMapKeyRef is { } cmk)
                {
                    Assert.True(configMaps.TryGetValue(cmk.Name, out var map) && map.Data.ContainsKey(cmk.Key), $"{w}: env {env.Name}: no ConfigMap key {cmk.Name}/{cmk.Key}");
                }

                if (env.ValueFrom.SecretKeyRef is { } sk)
                {
                    Assert.True(M.Secrets.TryGetValue(sk.Name, out var keys) && keys.Contains(sk.Key), $"{w}: env {env.Name}: no Secret key {sk.Name}/{sk.Key}");
                }
            }
        }
    }

    [Fact]
    public void ProbesPointAtDeclaredPortsAndK2rlContainersProbeTheGrpcHealthService()
    {
        foreach (var w in M.Workloads)
        {
            foreach (var c in w.Template.Spec.Containers)
            {
                foreach (var (kind, probe) in new[] { ("startup", c.StartupProbe), ("readiness", c.ReadinessProbe), ("liveness", c.LivenessProbe) })
                {
                    string? port = probe?.Grpc?.Port.ToString() ?? probe?.TcpSocket?.Port.Value ?? probe?.HttpGet?.Port.Value;
                    Assert.True(probe is null || probe.Exec is not null || (port is not null && HasPort([c], port)),
                        $"{w}: container {c.Name}'s {kind} probe points at port {port}, which it does not declare");
                }

                Assert.True(c.ReadinessProbe is not null && c.LivenessProbe is not null, $"{w}: container {c.Name} needs readiness and liveness probes");
                if (IsK2rl(c))
                {
                    // the kubelet's gRPC probe (grpc.health.v1.Health/Check), on the port the process serves its gRPC services
                    Assert.NotNull(c.ReadinessProbe!.Grpc);
                    Assert.NotNull(c.LivenessProbe!.Grpc);
                    // the trainer serves once it has loaded its base, a worker once the trainer's model reached it:
                    // a startup probe keeps liveness from restarting them meanwhile (at least 5 minutes)
                    var startup = c.StartupProbe;
                    Assert.True(startup?.Grpc is not null && (startup.PeriodSeconds ?? 10) * (startup.FailureThreshold ?? 3) >= 300,
                        $"{w}: container {c.Name} needs a gRPC startup probe allowing >= 300 s");
                }
            }
        }
    }

    [Fact]
    public void EveryContainerHasResourcesAndRunsUnprivilegedOnAReadOnlyRoot()
    {
        foreach (var w in M.Workloads)
        {
            var pod = w.Template.Spec.SecurityContext;
            Assert.True(pod?.RunAsNonRoot == true && pod.RunAsUser > 0 && pod.FsGroup > 0, $"{w}: the pod must run as a fixed non-root uid with an fsGroup");
            foreach (var c in w.AllContainers)
            {
                foreach (string r in new[] { "cpu", "memory" })
                {
                    Assert.True(c.Resources?.Requests?.ContainsKey(r) == true && c.Resources.Limits?.ContainsKey(r) == true, $"{w}: container {c.Name} lacks a {r} request or limit");
                    Assert.True(c.Resources.Requests[r].ToDecimal() <= c.Resources.Limits[r].ToDecimal(), $"{w}: container {c.Name}: {r} request above its limit");
                }

                var sc = c.SecurityContext;
                Assert.True(sc?.AllowPrivilegeEscalation == false && sc.ReadOnlyRootFilesystem == true && sc.Capabilities?.Drop?.Contains("ALL") == true,
                    $"{w}: container {c.Name} must drop all capabilities, forbid privilege escalation and keep its root file system read-only");
            }
        }
    }

    [Fact]
    public void K2rlContainersRunTheImageAsItsUserWithAWritableTmp()
    {
        var image = M.Kustomization.Images.Single();
        var dockerfile = Dockerfile.Load();
        foreach (var w in M.Workloads.Where(w => w.AllContainers.Any(IsK2rl)))
        {
            Assert.All(w.AllContainers, c => Assert.Equal($"{image.Name}:{image.NewTag}", c.Image));
            Assert.Equal(dockerfile.User, $"{w.Template.Spec.SecurityContext.RunAsUser}:{w.Template.Spec.SecurityContext.RunAsGroup}");
            Assert.All(w.AllContainers, c => Assert.Contains(c.VolumeMounts, m => m.MountPath == "/tmp"));
        }
    }

    internal static bool IsK2rl(V1Container c) => c.Image.Split(':')[0].Split('/')[^1] == "k2rl";

    /// <summary>True when a container declares the port, by name or by number.</summary>
    internal static bool HasPort(IEnumerable<V1Container> containers, string port) =>
        containers.SelectMany(c => c.Ports ?? []).Any(p => p.Name == port || p.ContainerPort.ToString() == port);
}
