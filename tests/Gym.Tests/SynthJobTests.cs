using K2RL.Common;
using K2RL.Gym.Synthesis;

namespace K2RL.Gym.Tests;

/// <summary>Synthesis job files: the shipped one loads; malformed ones are errors naming file:line and the key.</summary>
public sealed class SynthJobTests
{
    private static readonly IReadOnlyCollection<string> Known = SynthesisPipeline.KnownEnvs(GymRegistry.CreateDefault());

    private static SynthJob Parse(string yaml) => SynthJob.Parse(yaml, "job.yaml", Known);

    [Fact]
    public void TheShippedJobLoadsWithTheGymEnvsAsTheMajority()
    {
        string path = Path.Combine(K2RL.Tests.Shared.ExternalTools.RepoRoot(), "configs", "jobs", "synth-nano.yaml");
        var job = SynthJob.Load(path, Known);
        Assert.Equal(SynthGeneratorSpec.Expert, job.Generator.Kind);
        Assert.Equal(["arithmetic", "countdown", "list_ops", "tool_use", "agentic"], job.Envs.Select(e => e.Name));
        double agentic = job.Envs.Single(e => e.Name == "agentic").Weight / job.Envs.Sum(e => e.Weight);
        Assert.InRange(agentic, 0.01, 0.2);
        Assert.All(job.Envs, e => Assert.Equal([1, 2, 3], e.Difficulties));
        Assert.Equal(0.3, job.Agentic.FailureShare, 6);
    }

    [Fact]
    public void ParsesGeneratorsAndOptions()
    {
        var job = Parse("""
            seed: 9
            trajectories: 50
            generator: {kind: http, url: "http://127.0.0.1:9/v1/chat/completions", model: m, api_key_env: KEY, max_tokens: 64, batch: 4}
            envs:
              tool_use: {weight: 2, difficulty: [2]}
              agentic: {failure_share: 0.5, failure_kinds: [timeout], categories: [travel]}
            output: {rejected: false, shard_records: 10}
            """);
        Assert.Equal(9, job.Seed);
        Assert.Equal("http", job.Generator.Kind);
        Assert.Equal(64, job.Generator.MaxTokens);
        Assert.Equal([2], job.Envs[0].Difficulties);
        Assert.Equal(["timeout"], job.Agentic.FailureKinds);
        Assert.Equal(["travel"], job.Categories);
        Assert.False(job.WriteRejected);
        Assert.Equal(10, job.ShardRecords);
    }

    [Fact]
    public void WorkedSolutionsAreChosenForEveryEnvOrPerEnv()
    {
        var all = Parse("generator: {solutions: detailed}\nenvs:\n  arithmetic: {}\n  list_ops: {solutions: compact}\n  tool_use: {}\n");
        Assert.Equal(["arithmetic", "tool_use"], all.DetailedEnvs.Order());
        var one = Parse("envs:\n  arithmetic: {solutions: detailed}\n  list_ops: {}\n");
        Assert.Equal(["arithmetic"], one.DetailedEnvs);
        Assert.Empty(Parse("envs: {arithmetic: {}}\n").DetailedEnvs);
    }

    [Fact]
    public void AnEnvMayHaveItsOwnGenerator()
    {
        var job = Parse("""
            generator: {solutions: detailed}
            envs:
              arithmetic: {}
              countdown:
                weight: 2
                generator: {kind: checkpoint, path: runs/base, temperature: 1.0, max_tokens: 160, batch: 32}
              list_ops: {generator: {kind: checkpoint, path: runs/base, temperature: 1.0, max_tokens: 160, batch: 32}}
              tool_use: {generator: {kind: expert}}
            """);
        var countdown = job.Envs.Single(e => e.Name == "countdown");
        Assert.Equal(SynthGeneratorSpec.Checkpoint, job.GeneratorFor(countdown).Kind);
        Assert.Equal("runs/base", job.GeneratorFor(countdown).Path);
        Assert.Equal(1.0f, job.GeneratorFor(countdown).Temperature);
        Assert.Same(job.Generator, job.GeneratorFor(job.Envs[0]));

        // Equal specs are one source; the job's detailed setting reaches only envs played by the expert with it.
        Assert.Equal(3, job.Generators.Count);
        Assert.Equal(["arithmetic"], job.DetailedEnvs);
    }

    [Theory]
    [InlineData("envs:\n  arithmetic: {weight: 1}\nsed: 3\n", "job.yaml:3:1: unknown key \"sed\"")]
    [InlineData("envs:\n  arithmatic: {weight: 1}\n", "job.yaml:2:3: unknown environment \"envs.arithmatic\"")]
    [InlineData("envs:\n  arithmetic: {weight: 1, difficulty: [1, 9]}\n", "job.yaml:2:27: \"envs.arithmetic.difficulty\" must list distinct levels in [1, 5]")]
    [InlineData("envs:\n  arithmetic: {difficulty: [1, 2], difficulty_weights: [1]}\n", "\"envs.arithmetic.difficulty_weights\" needs one weight >= 0 per difficulty")]
    [InlineData("envs:\n  arithmetic: {difficulty: [one]}\n", "job.yaml:2:16: \"envs.arithmetic.difficulty\" entries must be numbers, got \"one\"")]
    [InlineData("envs:\n  arithmetic: {failure_share: 0.5}\n", "unknown key \"envs.arithmetic.failure_share\"")]
    [InlineData("envs:\n  agentic: {failure_share: 2}\n", "\"envs.agentic.failure_share\" must be >= 0 and <= 1, got 2")]
    [InlineData("envs:\n  agentic: {failure_kinds: [explode]}\n", "entries must be among timeout, error, wrong_type; got \"explode\"")]
    [InlineData("envs:\n  agentic: {categories: [cooking]}\n", "job.yaml:2:26: \"envs.agentic.categories\" entries must be among commerce, travel, events; got \"cooking\"")]
    [InlineData("trajectories: 10\n", "\"envs\" needs at least one environment with a weight > 0")]
    [InlineData("generator: {kind: checkpoint}\nenvs: {arithmetic: {}}\n", "required key \"generator.path\"")]
    [InlineData("generator: {kind: http, url: not-a-url}\nenvs: {arithmetic: {}}\n", "\"generator.url\" is not an absolute URL")]
    [InlineData("generator: {kind: gpt}\nenvs: {arithmetic: {}}\n", "\"generator.kind\" must be one of expert, checkpoint, http")]
    [InlineData("generator: {solutions: verbose}\nenvs: {arithmetic: {}}\n", "\"generator.solutions\" must be one of compact, detailed")]
    [InlineData("envs:\n  arithmetic: {solutions: long}\n", "job.yaml:2:27: \"envs.arithmetic.solutions\" must be one of compact, detailed; got \"long\"")]
    [InlineData("generator: {kind: checkpoint, path: runs/x}\nenvs:\n  arithmetic: {solutions: detailed}\n", "a checkpoint generator writes its own")]
    [InlineData("generator: {kind: http, url: 'http://127.0.0.1:1/v1', solutions: detailed}\nenvs: {arithmetic: {}}\n", "a http generator writes its own")]
    [InlineData("envs: [arithmetic\n", "job.yaml:")]
    [InlineData("- a list\n", "the file must be a YAML mapping")]
    [InlineData("envs:\n  countdown: {generator: {kind: checkpoint}}\n", "required key \"envs.countdown.generator.path\"")]
    [InlineData("envs:\n  countdown: {generator: {kind: checkpoint, path: x, temprature: 1}}\n", "unknown key \"envs.countdown.generator.temprature\"")]
    [InlineData("envs:\n  countdown: {generator: {kind: checkpoint, path: x}, solutions: detailed}\n", "job.yaml:2:55: \"envs.countdown.solutions\" chooses the expert programs' worked solutions; a checkpoint generator writes its own")]
    [InlineData("envs:\n  countdown: {generator: 3}\n", "job.yaml:2:26: \"envs.countdown.generator\" must be a mapping")]
    public void MalformedJobIsAnErrorNamingFileLineAndKey(string yaml, string expected)
    {
        var e = Assert.Throws<ConfigException>(() => Parse(yaml));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith("job.yaml", e.Message);
    }

    [Fact]
    public async Task MaxTokensWithoutATokenizerIsAnError()
    {
        var job = Parse("envs: {arithmetic: {}}\noutput: {max_tokens: 512}\n");
        var e = await Assert.ThrowsAsync<ConfigException>(() => SynthesisPipeline.RunAsync(job, Path.GetTempPath()));
        Assert.Contains("output.max_tokens (512) needs a tokenizer", e.Message);
    }

    [Fact]
    public async Task MaxTokensRejectsLongerRecordsAsTooLong()
    {
        string dir = Path.Combine(Path.GetTempPath(), "k2rl-synthlen-" + Guid.NewGuid().ToString("N"));
        try
        {
            var job = Parse("seed: 2\ntrajectories: 40\nenvs: {arithmetic: {}, tool_use: {}}\noutput: {max_tokens: 1000}\n");
            var summary = await SynthesisPipeline.RunAsync(job, dir, new SynthRunOptions { TokenCounter = r => K2RL.Common.Chat.ChatFormat.Render(r.Messages, r.Tools).Length });
            Assert.Equal(20, summary.RejectedByReason["too_long"]);   // every tool_use transcript is over 1,000 chars, no arithmetic one
            Assert.All(summary.ByEnv["arithmetic"].Tokens, t => Assert.InRange(t, 1, 1000));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
