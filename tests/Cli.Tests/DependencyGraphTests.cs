using System.Xml.Linq;

namespace K2RL.Cli.Tests;

/// <summary>The one-way project graph of DESIGN.md, checked on the declared project references.</summary>
public class DependencyGraphTests
{
    // Direct references each project may declare.
    private static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["Protos"] = [],
        ["Kernels"] = [],
        ["Common"] = ["Protos"],
        ["Model"] = ["Kernels", "Common"],
        ["Gym"] = ["Common"],
        ["CheckpointEngine"] = ["Common", "Kernels"],   // Kernels: its streaming copies and spans over mapped memory (the unsafe code)
        ["Rollout"] = ["Model", "Gym", "CheckpointEngine", "Common"],
        ["Trainer"] = ["Model", "Rollout", "Gym", "CheckpointEngine", "Common"],
        ["Cli"] = ["Trainer", "Rollout", "Model", "Gym", "CheckpointEngine", "Common", "Kernels"],
    };

    private static Dictionary<string, string[]> DeclaredGraph()
    {
        string root = K2RL.Tests.Shared.ExternalTools.RepoRoot();
        var projects = Directory.GetFiles(Path.Combine(root, "src"), "*.csproj", SearchOption.AllDirectories)
            .Append(Path.Combine(root, "protos", "Protos.csproj"));
        return projects.ToDictionary(
            p => Path.GetFileNameWithoutExtension(p),
            p => XDocument.Load(p).Descendants("ProjectReference")
                .Select(r => Path.GetFileNameWithoutExtension(r.Attribute("Include")!.Value))
                .ToArray());
    }

    private static HashSet<string> Closure(Dictionary<string, string[]> graph, string from)
    {
        var seen = new HashSet<string>();
        var stack = new Stack<string>(graph[from]);
        while (stack.TryPop(out var p))
        {
            if (seen.Add(p))
            {
                foreach (var q in graph[p])
                {
                    stack.Push(q);
                }
            }
        }

        return seen;
    }

    [Fact]
    public void EveryProjectReferencesOnlyWhatDesignAllows()
    {
        var graph = DeclaredGraph();
        Assert.Equal(Allowed.Keys.Order(), graph.Keys.Order());
        foreach (var (project, refs) in graph)
        {
            foreach (var r in refs)
            {
                Assert.True(Allowed[project].Contains(r), $"{project} must not reference {r}");
            }
        }

        Assert.DoesNotContain("Trainer", Closure(graph, "Rollout"));
        Assert.DoesNotContain("Model", Closure(graph, "Gym"));
        Assert.DoesNotContain("Kernels", Closure(graph, "Gym"));
        Assert.Empty(Closure(graph, "Kernels"));
    }

    [Fact]
    public void OnlyKernelsAllowsUnsafeCode()
    {
        string root = K2RL.Tests.Shared.ExternalTools.RepoRoot();
        foreach (var csproj in Directory.GetFiles(Path.Combine(root, "src"), "*.csproj", SearchOption.AllDirectories))
        {
            bool unsafeOn = File.ReadAllText(csproj).Contains("<AllowUnsafeBlocks>true", StringComparison.Ordinal);
            Assert.True(!unsafeOn || csproj.EndsWith("Kernels.csproj", StringComparison.Ordinal),
                $"{csproj} allows unsafe code; only src/Kernels may");
        }
    }
}
