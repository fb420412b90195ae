using K2RL.Common;
using K2RL.Gym;
using K2RL.Gym.Critic;
using K2RL.Tests.Shared;

namespace K2RL.Gym.Tests;

public class RubricTests
{
    [Fact]
    public void ShippedRubricsLoad()
    {
        var rubrics = RubricLoader.LoadDirectory(Path.Combine(ExternalTools.RepoRoot(), "configs", "rubrics"));
        Assert.Contains(rubrics, r => r is { Name: "clarity_and_relevance", Kind: RubricKind.Core, Mandatory: false });
        Assert.Contains(rubrics, r => r is { Name: "conversational_fluency", Kind: RubricKind.Core });
        Assert.Contains(rubrics, r => r is { Name: "objective_and_grounded", Kind: RubricKind.Core });
        Assert.Contains(rubrics, r => r is { Name: "no_initial_praise", Kind: RubricKind.Prescriptive, Mandatory: true });
        Assert.Contains(rubrics, r => r is { Name: "no_self_justification", Kind: RubricKind.Prescriptive, Mandatory: true });
        Assert.All(rubrics, r => Assert.NotEmpty(r.Criteria));
        Assert.EndsWith("core.yaml:4:5", rubrics.First(r => r.Name == "clarity_and_relevance").Source);
    }

    [Fact]
    public void TaskSpecificRubricsApplyByTag()
    {
        var r = RubricLoader.Parse("kind: task_specific\nrubrics:\n  - name: cites\n    description: Cites sources.\n    applies_to: [research]\n", "t.yaml");
        var rubric = Assert.Single(r);
        Assert.True(rubric.AppliesToTags(["research"]));
        Assert.False(rubric.AppliesToTags(["chat"]));
    }

    [Theory]
    [InlineData("kind: core\nrubrics:\n  - name: a\n    description: d\n    mandatory: maybe\n", "bad.yaml:5:16", "true or false")]
    [InlineData("kind: core\nrubrics:\n  - name: a\n    descripton: d\n", "bad.yaml:4:5", "unknown key \"rubrics[0].descripton\"")]
    [InlineData("kind: core\nrubrics:\n  - name: a\n", "bad.yaml:3:5", "required key \"rubrics[0].description\" is missing")]
    [InlineData("kind: fancy\nrubrics: []\n", "bad.yaml:1:7", "must be one of core, prescriptive, task_specific")]
    [InlineData("kind: core\nrubrics:\n  - name: a\n    description: [unclosed\n", "bad.yaml:5:1", "YAML syntax error")]
    [InlineData("kind: core\nrubrics:\n  - name: a\n    description: d\n  - name: a\n    description: e\n", "bad.yaml:5:5", "appears twice")]
    [InlineData("kind: core\nrubric: []\n", "bad.yaml:2:1", "unknown key \"rubric\"")]
    [InlineData("kind: core\nrubrics:\n  - name: a\n    description: d\n    criteria: one\n", "bad.yaml:5:15", "\"rubrics[0].criteria\" must be a list")]
    public void ErrorsNameFileAndLine(string yaml, string where, string what)
    {
        var e = Assert.Throws<ConfigException>(() => RubricLoader.Parse(yaml, "bad.yaml"));
        Assert.StartsWith(where, e.Message);
        Assert.Contains(what, e.Message);
    }

    [Fact]
    public void DuplicateAcrossFilesNamesBoth()
    {
        string dir = Directory.CreateTempSubdirectory("rubrics").FullName;
        File.WriteAllText(Path.Combine(dir, "a.yaml"), "rubrics:\n  - name: x\n    description: d\n");
        File.WriteAllText(Path.Combine(dir, "b.yaml"), "rubrics:\n  - name: y\n    description: d\n  - name: x\n    description: d\n");
        var e = Assert.Throws<ConfigException>(() => RubricLoader.LoadDirectory(dir));
        Assert.Contains("b.yaml:4:5", e.Message);
        Assert.Contains("a.yaml:2:5", e.Message);
    }
}
