using K2RL.Gym.Critic;
using K2RL.Gym.Critic.Workbench;

namespace K2RL.Gym.Tests;

public sealed class RubricCheckTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("k2rl-rubriccheck-").FullName;

    private void Write(string name, string yaml) => File.WriteAllText(Path.Combine(dir, name), yaml);

    [Fact]
    public void ListsEveryFileAndWhichRubricsApplyToWhichTags()
    {
        Write("a.yaml", "kind: core\nrubrics:\n  - name: clear\n    description: d\n  - name: no_praise\n    kind: prescriptive\n    mandatory: true\n    description: d\n");
        Write("b.yml", "kind: task_specific\nrubrics:\n  - name: cites\n    description: d\n    applies_to: [research, news]\n  - name: tests_pass\n    description: d\n    applies_to: [code]\n");
        File.WriteAllText(Path.Combine(dir, "notes.txt"), "not a rubric file");
        var result = RubricCheck.Check(dir);
        Assert.True(result.Ok);
        Assert.Equal(2, result.Files.Count);
        Assert.Equal(["clear", "no_praise"], result.ForEveryPrompt.Select(r => r.Name));
        Assert.Equal(["code", "news", "research"], result.ByTag.Select(t => t.Tag));
        Assert.Equal(["cites"], result.ByTag.Single(t => t.Tag == "news").Adds.Select(r => r.Name));
        Assert.Equal(["clear", "no_praise", "tests_pass"], result.For(["code"]).Select(r => r.Name));
    }

    [Fact]
    public void EveryBadFileIsReportedWithItsPositionAndTheGoodOnesStillLoad()
    {
        Write("a.yaml", "rubrics:\n  - name: ok\n    description: d\n");
        Write("b.yaml", "rubrics:\n  - name: bad\n    descripton: typo\n");
        Write("c.yaml", "rubrics: [\n");
        var result = RubricCheck.Check(dir);
        Assert.False(result.Ok);
        Assert.Equal(2, result.Errors.Count);
        Assert.Matches(@"b\.yaml:\d+:\d+: .*descripton", result.Errors[0]);
        Assert.Matches(@"c\.yaml:\d+:\d+: ", result.Errors[1]);
        Assert.Equal(["ok"], result.Rubrics.Select(r => r.Name));
    }

    [Fact]
    public void ANameDefinedInTwoFilesIsAnError()
    {
        Write("a.yaml", "rubrics:\n  - name: same\n    description: d\n");
        Write("b.yaml", "rubrics:\n  - name: same\n    description: d\n");
        var error = Assert.Single(RubricCheck.Check(dir).Errors);
        Assert.Matches(@"b\.yaml:2:5: rubric 'same' is already defined at .*a\.yaml:2:5", error);
    }

    [Fact]
    public void ADirectoryWithoutRubricFilesSaysSo()
    {
        Assert.Equal($"{dir}: no rubric files (*.yaml, *.yml)", Assert.Single(RubricCheck.Check(dir).Errors));
        Assert.Equal(" (it holds no rubrics)", RubricCheck.NoneApplyHint([]));
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);
}
