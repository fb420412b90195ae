using K2RL.Common;
using K2RL.Gym;
using K2RL.Tests.Shared;
using K2RL.Trainer.Rl;

namespace K2RL.Trainer.Tests.Rl;

/// <summary>The RL job's external-judge settings: parsed into the judge's connection, bad values refused at file:line.</summary>
public class RlCriticConfigTests
{
    private static RlJobConfig Parse(string critic)
    {
        string root = ExternalTools.RepoRoot();
        string text = File.ReadAllText(Path.Combine(root, "configs", "jobs", "rl-nano.yaml"));
        // The committed job's own rubric_detail line goes, so that a test's settings are the only ones.
        text = string.Join("\n", text.Split('\n').Where(l => !l.TrimStart().StartsWith("rubric_detail:", StringComparison.Ordinal)));
        text = text.Replace("critic:\n  judge: policy\n", "critic:\n" + critic);
        Assert.Contains(critic, text);
        return RlJobConfig.Parse(text, "rl.yaml", GymRegistry.CreateDefault().Environments.Select(e => e.Name).ToArray(),
            SyntheticCorpus.CreateDefault().Kinds, initFrom: root);
    }

    [Fact]
    public void TheJudgesConnectionSettingsAreRead()
    {
        var c = Parse("  judge: http\n  endpoint: http://127.0.0.1:9/v1/chat/completions\n  model: big\n  timeout_s: 5\n  retries: 0\n  max_concurrency: 9\n  api_key_env: JUDGE_KEY\n").Critic;
        Assert.Equal(("http", "big"), (c.Judge, c.JudgeModel));
        Assert.Equal(TimeSpan.FromSeconds(5), c.Http.Timeout);
        Assert.Equal((0, 9, "JUDGE_KEY"), (c.Http.Retries, c.Http.MaxConcurrency, c.Http.ApiKeyEnv));
    }

    [Fact]
    public void DefaultsAreTheJudgesOwn()
    {
        var c = Parse("  judge: policy\n").Critic;
        Assert.Equal(new K2RL.Gym.Critic.HttpJudgeOptions(), c.Http);
    }

    [Fact]
    public void RubricDetailIsFullUnlessBriefIsAsked()
    {
        Assert.Equal(K2RL.Gym.Critic.RubricDetail.Full, Parse("  judge: policy\n").Critic.RubricDetail);
        Assert.Equal(K2RL.Gym.Critic.RubricDetail.Brief, Parse("  judge: policy\n  rubric_detail: brief\n").Critic.RubricDetail);
    }

    [Theory]
    [InlineData("  judge: policy\n  rubric_detail: short\n", "critic.rubric_detail")]
    [InlineData("  judge: policy\n  rubrics: /nonexistent/rubrics\n", "\"critic.rubrics\" is not a directory: /nonexistent/rubrics")]
    [InlineData("  judge: http\n  endpoint: ftp://x/y\n", "\"critic.endpoint\" must be an http:// or https:// URL")]
    [InlineData("  judge: http\n  endpoint: not a url\n", "\"critic.endpoint\" must be an http:// or https:// URL")]
    [InlineData("  judge: http\n  endpoint: http://127.0.0.1:9/\n  timeout_s: 0\n", "critic.timeout_s")]
    [InlineData("  judge: http\n  endpoint: http://127.0.0.1:9/\n  retries: -1\n", "critic.retries")]
    [InlineData("  judge: http\n  endpoint: http://127.0.0.1:9/\n  max_concurrency: 0\n", "critic.max_concurrency")]
    public void BadSettingsAreRefusedNamingTheLine(string critic, string expected)
    {
        var e = Assert.Throws<ConfigException>(() => Parse(critic));
        Assert.Contains(expected, e.Message);
        Assert.Matches(@"^rl\.yaml:\d+:\d+: ", e.Message);
    }
}
