using System.Text.Json;
using K2RL.Tests.Shared;

namespace K2RL.Cli.Tests;

public sealed class GymRubricsCommandTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("k2rl-gymrubrics-").FullName;

    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => ModelCommandInfoTests.Run(args);

    [Fact]
    public async Task TheShippedRubricsCheckCleanAndApplyToEveryPrompt()
    {
        var (code, stdout, stderr) = await Run("gym", "rubrics", "check", Path.Combine(ExternalTools.RepoRoot(), "configs", "rubrics"));
        Assert.True(code == 0, stderr);
        Assert.Contains("2 file(s), 5 rubric(s), no errors", stdout);
        Assert.Contains("  prescriptive.yaml: no_initial_praise* (prescriptive), no_self_justification* (prescriptive)", stdout);
        Assert.Contains("Every prompt: clarity_and_relevance (core), conversational_fluency (core), objective_and_grounded (core), no_initial_praise* (prescriptive)", stdout);
    }

    [Fact]
    public async Task JsonShowsWhichRubricsApplyToWhichTags()
    {
        var (code, stdout, stderr) = await Run("gym", "rubrics", "check", Path.Combine(ExternalTools.RepoRoot(), "docs", "examples", "rubrics"),
            "--tags", "arithmetic", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("ok").GetBoolean());
        Assert.Equal(["correct_and_checked", "no_initial_praise"], root.GetProperty("every_prompt").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["names_the_operation"], root.GetProperty("by_tag").GetProperty("arithmetic").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(3, root.GetProperty("for_tags").GetProperty("rubrics").GetArrayLength());
        var praise = root.GetProperty("files")[0].GetProperty("rubrics")[1];
        Assert.True(praise.GetProperty("mandatory").GetBoolean());
        Assert.Matches(@"workbench\.yaml:\d+:\d+$", praise.GetProperty("source").GetString());
    }

    [Fact]
    public async Task EveryBadFileIsNamedWithLineAndColumnAndTheExitCodeIsOne()
    {
        File.WriteAllText(Path.Combine(dir, "a.yaml"), "rubrics:\n  - name: fine\n    description: d\n");
        File.WriteAllText(Path.Combine(dir, "b.yaml"), "rubrics:\n  - name: typo\n    mandatory: maybe\n    description: d\n");
        var (code, stdout, _) = await Run("gym", "rubrics", "check", dir, "--tags", "x");
        Assert.Equal(1, code);
        Assert.Contains("1 rubric(s), 1 error(s)", stdout);
        Assert.Matches(@"error: .*b\.yaml:3:\d+: ", stdout);
        Assert.Contains("Of the rubrics that loaded:", stdout);
        Assert.Contains("A prompt tagged [x]: fine (core)", stdout);
    }

    [Fact]
    public async Task ADirectoryWithNoRubricFilesOrNoneAtAllSaysSo()
    {
        var (code, stdout, _) = await Run("gym", "rubrics", "check", dir);
        Assert.Equal(1, code);
        Assert.Contains($"error: {dir}: no rubric files (*.yaml, *.yml)", stdout);
        var (missing, _, stderr) = await Run("gym", "rubrics", "check", Path.Combine(dir, "nope"));
        Assert.Equal(1, missing);
        Assert.Contains("rubric directory not found", stderr);
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);
}
