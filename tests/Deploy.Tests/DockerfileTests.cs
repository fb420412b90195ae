using System.Text.RegularExpressions;
using System.Xml.Linq;
using K2RL.Tests.Shared;

namespace K2RL.Deploy.Tests;

/// <summary>
/// deploy/Dockerfile, checked statically: no Docker engine runs on this machine, so the image is not built here
/// (deploy/README.md says so). What is checked: the stages and their base images, the restore layer against the
/// project graph, every COPY source, the published entrypoint against the CLI project, the non-root user.
/// </summary>
public class DockerfileTests
{
    private static readonly string Root = ExternalTools.RepoRoot();
    private static readonly Dockerfile D = Dockerfile.Load();
    private const string CliProject = "src/Cli/Cli.csproj";

    [Fact]
    public void TheSdkBuildsAndTheAspNetRuntimeRuns()
    {
        string tfm = XDocument.Load(Path.Combine(Root, "Directory.Build.props")).Descendants("TargetFramework").Single().Value;
        string version = Regex.Match(tfm, @"^net(\d+\.\d+)$").Groups[1].Value;
        Assert.Equal(2, D.Stages.Count);
        Assert.Equal(($"mcr.microsoft.com/dotnet/sdk:{version}", "build"), D.Stages[0]);
        // The gRPC services run on Kestrel (a FrameworkReference to Microsoft.AspNetCore.App): the runtime image must carry ASP.NET Core.
        bool aspNet = ProjectClosure().Any(p => XDocument.Load(Path.Combine(Root, p)).Descendants("FrameworkReference")
            .Any(f => f.Attribute("Include")?.Value == "Microsoft.AspNetCore.App"));
        Assert.True(aspNet, "no project of the CLI references ASP.NET Core any more: the runtime image could be dotnet/runtime");
        Assert.Equal($"mcr.microsoft.com/dotnet/aspnet:{version}", D.Stages[D.FinalStage].Image);
    }

    [Fact]
    public void TheRestoreLayerCopiesEveryProjectTheCliBuildsAndTheBuildSettings()
    {
        var restore = D.In(0, "RUN").First(r => r.Arguments.StartsWith("dotnet restore", StringComparison.Ordinal));
        Assert.Contains(CliProject, restore.Arguments);
        var copied = D.Copies.Where(c => c.At.Stage == 0 && c.At.Line < restore.Line)
            .SelectMany(c => c.Sources.Select(s => c.Destination.EndsWith('/') && c.Sources.Length == 1 && s.EndsWith(".csproj", StringComparison.Ordinal)
                ? c.Destination + Path.GetFileName(s) : s))
            .ToHashSet();
        foreach (string project in ProjectClosure())
        {
            Assert.True(copied.Contains(project), $"{Dockerfile.RelativePath}: the restore layer does not copy {project}, which {CliProject} needs");
        }

        foreach (string file in new[] { "global.json", "nuget.config", "Directory.Build.props", "Directory.Packages.props" })
        {
            Assert.True(copied.Contains(file), $"{Dockerfile.RelativePath}: the restore layer does not copy {file}");
        }
    }

    [Fact]
    public void EveryCopySourceExistsAndIsInTheBuildContext()
    {
        string[] ignored = File.ReadAllLines(Path.Combine(Root, ".dockerignore"))
            .Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToArray();
        foreach (var (at, flags, sources, _) in D.Copies.Where(c => !c.Flags.Any(f => f.StartsWith("--from=", StringComparison.Ordinal))))
        {
            foreach (string source in sources)
            {
                string path = Path.Combine(Root, source.TrimEnd('/'));
                Assert.True(File.Exists(path) || Directory.Exists(path), $"{Dockerfile.RelativePath}:{at.Line}: COPY source {source} is not in the repository");
                string top = source.Split('/')[0];
                Assert.DoesNotContain(ignored, p => p.TrimEnd('/') == top || p == source);
            }
        }

        // what the image must not carry in: build outputs and the run directories
        Assert.Contains("**/bin/", ignored);
        Assert.Contains("**/obj/", ignored);
        Assert.Contains("runs/", ignored);
    }

    [Fact]
    public void TheEntrypointIsThePublishedCli()
    {
        string assembly = XDocument.Load(Path.Combine(Root, CliProject)).Descendants("AssemblyName").Single().Value;
        var publish = D.In(0, "RUN").Single(r => r.Arguments.StartsWith("dotnet publish", StringComparison.Ordinal));
        Assert.Contains($"{CliProject} -c Release", publish.Arguments);
        // for the image's architecture, on the shared runtime of the final stage (not self-contained)
        Assert.Contains("-a \"${TARGETARCH:-amd64}\" --self-contained false", publish.Arguments);
        Assert.Contains("-a \"${TARGETARCH:-amd64}\"", D.In(0, "RUN").First(r => r.Arguments.StartsWith("dotnet restore", StringComparison.Ordinal)).Arguments);
        string output = Regex.Match(publish.Arguments, @"-o (\S+)").Groups[1].Value;
        var fromBuild = D.Copies.Single(c => c.At.Stage == D.FinalStage && c.Flags.Contains("--from=build"));
        Assert.Equal(output.TrimEnd('/'), fromBuild.Sources.Single().TrimEnd('/'));
        string bin = fromBuild.Destination.TrimEnd('/');
        Assert.Contains(D.In(D.FinalStage, "ENV"), e => Regex.IsMatch(e.Arguments, $@"PATH=""?{Regex.Escape(bin)}:"));
        Assert.Equal(assembly, D.Entrypoint[0]);
        Assert.Equal("k2rl", assembly);
    }

    [Fact]
    public void TheImageRunsAsAFixedNonRootUserFromAWorkdirHoldingTheConfigs()
    {
        var m = Regex.Match(D.User, @"^(\d+):(\d+)$");
        Assert.True(m.Success, $"USER {D.User}: a numeric uid:gid (Kubernetes' runAsNonRoot can only check a numeric user)");
        Assert.NotEqual("0", m.Groups[1].Value);
        var create = D.In(D.FinalStage, "RUN").Single(r => r.Arguments.Contains("useradd", StringComparison.Ordinal));
        Assert.Contains($"--uid {m.Groups[1].Value}", create.Arguments);
        Assert.Contains($"--gid {m.Groups[2].Value}", create.Arguments);
        Assert.True(D.In(D.FinalStage, "USER").Last().Line > D.In(D.FinalStage, "RUN").Max(r => r.Line), "USER comes after the last RUN");
        var workdir = D.In(D.FinalStage, "WORKDIR").Single();
        var configs = D.Copies.Single(c => c.At.Stage == D.FinalStage && c.Sources.SequenceEqual(["configs/"]));
        Assert.True(configs.At.Line > workdir.Line && configs.Destination == "configs/", "configs/ lands in the working directory, where job files' relative paths resolve");
    }

    [Fact]
    public void TheParserJoinsContinuationLinesAndNamesStages()
    {
        var d = Dockerfile.Parse("FROM --platform=$BUILDPLATFORM a:1 AS one\n# c\nRUN x \\\n  && y\nFROM b:2\ncopy --from=one /o/ /p/\nUSER 5:6\n");
        Assert.Equal([("a:1", "one"), ("b:2", "1")], d.Stages);
        Assert.Equal("x && y", d.In(0, "RUN").Single().Arguments);
        Assert.Equal((["--from=one"], ["/o/"], "/p/"), d.Copies.Select(c => (c.Flags, c.Sources, c.Destination)).Single(), new CopyComparer());
        Assert.Equal("5:6", d.User);
    }

    /// <summary>Every project file src/Cli builds, itself included, as repository-relative paths.</summary>
    private static IReadOnlyCollection<string> ProjectClosure()
    {
        var seen = new SortedSet<string>(StringComparer.Ordinal);
        var stack = new Stack<string>([Path.Combine(Root, CliProject)]);
        while (stack.TryPop(out string? project))
        {
            if (seen.Add(Path.GetRelativePath(Root, project).Replace('\\', '/')))
            {
                foreach (var r in XDocument.Load(project).Descendants("ProjectReference"))
                {
                    stack.Push(Path.GetFullPath(Path.Combine(Path.GetDirectoryName(project)!, r.Attribute("Include")!.Value)));
                }
            }
        }

        return seen;
    }

    private sealed class CopyComparer : IEqualityComparer<(string[] Flags, string[] Sources, string Destination)>
    {
        public bool Equals((string[] Flags, string[] Sources, string Destination) a, (string[] Flags, string[] Sources, string Destination) b) =>
            a.Flags.SequenceEqual(b.Flags) && a.Sources.SequenceEqual(b.Sources) && a.Destination == b.Destination;

        public int GetHashCode((string[] Flags, string[] Sources, string Destination) x) => x.Destination.GetHashCode();
    }
}
