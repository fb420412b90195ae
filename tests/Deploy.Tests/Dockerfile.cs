using K2RL.Tests.Shared;

namespace K2RL.Deploy.Tests;

/// <summary>One instruction of a Dockerfile: its keyword (upper case), its arguments, and the stage it belongs to.</summary>
public sealed record DockerInstruction(int Line, string Keyword, string Arguments, int Stage);

/// <summary>
/// deploy/Dockerfile read the way docker reads it, as far as the static checks need: comments dropped, continuation
/// lines joined, one instruction each, grouped into stages by FROM. No Docker engine runs here, so the image itself is
/// not built by the tests; this is what can be checked without one.
/// </summary>
public sealed class Dockerfile
{
    public const string RelativePath = "deploy/Dockerfile";

    public required IReadOnlyList<DockerInstruction> Instructions { get; init; }

    /// <summary>Stage names (from FROM ... AS NAME), by index; unnamed stages are their index as text.</summary>
    public required IReadOnlyList<(string Image, string Name)> Stages { get; init; }

    public static Dockerfile Load() => Parse(File.ReadAllText(Path.Combine(ExternalTools.RepoRoot(), RelativePath)));

    public static Dockerfile Parse(string text)
    {
        var instructions = new List<DockerInstruction>();
        var stages = new List<(string, string)>();
        string[] lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }

            int start = i + 1;
            while (line.EndsWith('\\') && i + 1 < lines.Length)
            {
                string next = lines[++i].Trim();
                line = line[..^1].TrimEnd() + (next.StartsWith('#') ? "" : " " + next);
            }

            int space = line.IndexOf(' ');
            string keyword = (space < 0 ? line : line[..space]).ToUpperInvariant();
            string args = space < 0 ? "" : line[(space + 1)..].Trim();
            if (keyword == "FROM")
            {
                // FROM [--platform=...] IMAGE [AS NAME]
                string[] parts = args.Split(' ', StringSplitOptions.RemoveEmptyEntries).SkipWhile(p => p.StartsWith("--", StringComparison.Ordinal)).ToArray();
                stages.Add((parts[0], parts.Length == 3 && parts[1].Equals("AS", StringComparison.OrdinalIgnoreCase) ? parts[2] : stages.Count.ToString()));
            }

            instructions.Add(new DockerInstruction(start, keyword, args, stages.Count - 1));
        }

        return new Dockerfile { Instructions = instructions, Stages = stages };
    }

    public int FinalStage => Stages.Count - 1;

    public IEnumerable<DockerInstruction> In(int stage, string keyword) => Instructions.Where(x => x.Stage == stage && x.Keyword == keyword);

    /// <summary>The final stage's USER (the one the container runs as).</summary>
    public string User => In(FinalStage, "USER").Last().Arguments;

    /// <summary>The final stage's ENTRYPOINT in exec form (a JSON array).</summary>
    public string[] Entrypoint => System.Text.Json.JsonSerializer.Deserialize<string[]>(In(FinalStage, "ENTRYPOINT").Single().Arguments)!;

    /// <summary>(flags, sources, destination) of every COPY.</summary>
    public IEnumerable<(DockerInstruction At, string[] Flags, string[] Sources, string Destination)> Copies =>
        Instructions.Where(x => x.Keyword == "COPY").Select(x =>
        {
            string[] words = x.Arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            string[] flags = words.TakeWhile(w => w.StartsWith("--", StringComparison.Ordinal)).ToArray();
            string[] rest = words[flags.Length..];
            return (x, flags, rest[..^1], rest[^1]);
        });
}
