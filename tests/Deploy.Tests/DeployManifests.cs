using k8s;
using k8s.Models;
using K2RL.Tests.Shared;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace K2RL.Deploy.Tests;

/// <summary>A pod-owning object of deploy/k8s (Deployment, StatefulSet, Job) reduced to what the checks read.</summary>
public sealed record Workload(string File, string Kind, V1ObjectMeta Metadata, V1LabelSelector? Selector, V1PodTemplateSpec Template,
    IList<V1PersistentVolumeClaim> ClaimTemplates)
{
    public string Name => Metadata.Name;

    /// <summary>Init containers, then containers.</summary>
    public IEnumerable<V1Container> AllContainers => (Template.Spec.InitContainers ?? []).Concat(Template.Spec.Containers);

    public override string ToString() => $"{Kind}/{Name} ({File})";
}

/// <summary>deploy/k8s/kustomization.yaml: the fields K2RL uses, read strictly (an unknown field fails).</summary>
public sealed class Kustomization
{
    public string ApiVersion { get; set; } = "";
    public string Kind { get; set; } = "";
    public string Namespace { get; set; } = "";
    public List<string> Resources { get; set; } = [];
    public List<SecretGenerator> SecretGenerator { get; set; } = [];
    public List<ImageOverride> Images { get; set; } = [];
}

public sealed class SecretGenerator
{
    public string Name { get; set; } = "";
    public List<string> Files { get; set; } = [];
    public GeneratorOptions? Options { get; set; }

    /// <summary>The Secret's keys: a file entry is "KEY=PATH" or "PATH" (the key is the file's name).</summary>
    public IEnumerable<string> Keys => Files.Select(f => f.Contains('=') ? f[..f.IndexOf('=')] : Path.GetFileName(f));
}

public sealed class GeneratorOptions
{
    public bool DisableNameSuffixHash { get; set; }
    public Dictionary<string, string> Labels { get; set; } = [];
}

public sealed class ImageOverride
{
    public string Name { get; set; } = "";
    public string NewName { get; set; } = "";
    public string NewTag { get; set; } = "";
}

/// <summary>
/// Every document of deploy/k8s, deserialized with the KubernetesClient library's typed models in strict mode (an
/// unknown or misspelled field fails, naming the file and the field), plus the kustomization.
/// </summary>
public sealed class DeployManifests
{
    public const string Folder = "deploy/k8s";

    public required string Root { get; init; }
    public required Kustomization Kustomization { get; init; }

    /// <summary>(file, object) for every document of every resource file, in file order.</summary>
    public required IReadOnlyList<(string File, object Object)> Documents { get; init; }

    private static readonly Lazy<DeployManifests> Shipped = new(() => Load(Path.Combine(ExternalTools.RepoRoot(), Folder)));

    /// <summary>The manifests in the repository (loaded once per test run).</summary>
    public static DeployManifests Repo => Shipped.Value;

    public static DeployManifests Load(string root)
    {
        var kustomization = ReadKustomization(Path.Combine(root, "kustomization.yaml"));
        var documents = new List<(string, object)>();
        foreach (string file in kustomization.Resources)
        {
            documents.AddRange(LoadFile(Path.Combine(root, file)).Select(o => (file, o)));
        }

        return new DeployManifests { Root = root, Kustomization = kustomization, Documents = documents };
    }

    /// <summary>The documents of one YAML file, strictly; a failure names the file (and YamlDotNet's line and column).</summary>
    public static IReadOnlyList<object> LoadFile(string path)
    {
        try
        {
            return KubernetesYaml.LoadAllFromString(System.IO.File.ReadAllText(path), strict: true);
        }
        catch (Exception e) when (e is YamlDotNet.Core.YamlException or KeyNotFoundException)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    public static Kustomization ReadKustomization(string path)
    {
        var yaml = new DeserializerBuilder().WithNamingConvention(CamelCaseNamingConvention.Instance).Build();
        try
        {
            return yaml.Deserialize<Kustomization>(System.IO.File.ReadAllText(path));
        }
        catch (YamlDotNet.Core.YamlException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    public IEnumerable<T> All<T>() => Documents.Select(d => d.Object).OfType<T>();

    public IEnumerable<Workload> Workloads =>
        Documents.Select(d => d.Object switch
        {
            V1Deployment x => new Workload(d.File, "Deployment", x.Metadata, x.Spec.Selector, x.Spec.Template, []),
            V1StatefulSet x => new Workload(d.File, "StatefulSet", x.Metadata, x.Spec.Selector, x.Spec.Template, x.Spec.VolumeClaimTemplates ?? []),
            V1Job x => new Workload(d.File, "Job", x.Metadata, x.Spec.Selector, x.Spec.Template, []),
            _ => null,
        }).OfType<Workload>();

    public Workload Workload(string name) => Workloads.Single(w => w.Name == name);

    /// <summary>The Secrets: the documents' and the kustomization's generated ones, each with its keys.</summary>
    public IReadOnlyDictionary<string, IReadOnlyCollection<string>> Secrets =>
        All<V1Secret>().Select(s => (s.Metadata.Name, Keys: (IReadOnlyCollection<string>)(s.Data?.Keys ?? []).Concat(s.StringData?.Keys ?? []).ToArray()))
            .Concat(Kustomization.SecretGenerator.Select(g => (g.Name, Keys: (IReadOnlyCollection<string>)g.Keys.ToArray())))
            .ToDictionary(s => s.Name, s => s.Keys);

    public V1ConfigMap ConfigMap(string name) => All<V1ConfigMap>().Single(c => c.Metadata.Name == name);

    /// <summary>True when every label the selector asks for is on the pod.</summary>
    public static bool Selects(IDictionary<string, string>? selector, IDictionary<string, string>? podLabels) =>
        selector is { Count: > 0 } && podLabels is not null && selector.All(kv => podLabels.TryGetValue(kv.Key, out string? v) && v == kv.Value);
}
