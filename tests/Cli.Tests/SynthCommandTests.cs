using System.Text.Json;
using K2RL.Gym.Synthesis;
using K2RL.Model;

namespace K2RL.Cli.Tests;

/// <summary>
/// <c>k2rl synth</c>: the expert source end to end, the engine source over a randomly initialized tiny checkpoint (its
/// trajectories run through the real environments and are judged; a random model's are rejected with their reasons),
/// and a malformed job file.
/// </summary>
public sealed class SynthCommandTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "k2rl-synthcli-" + Guid.NewGuid().ToString("N"));

    public SynthCommandTests()
    {
        Directory.CreateDirectory(dir);
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => ModelCommandInfoTests.Run(args);

    private string Job(string text)
    {
        string path = Path.Combine(dir, "job.yaml");
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public async Task ExpertJobPrintsOneSummaryObjectAndWritesTheDataset()
    {
        string job = Job("seed: 4\ntrajectories: 50\nenvs:\n  tool_use: {weight: 1}\n  agentic: {weight: 1, difficulty: [1, 2, 3]}\n");
        string output = Path.Combine(dir, "out");
        var (code, json, err) = await Run("synth", "--job", job, "--out", output, "--count", "40", "--json");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(json);   // the whole of stdout is one JSON object
        var root = doc.RootElement;
        Assert.Equal(40, root.GetProperty("judged").GetInt32());
        Assert.Equal(40, root.GetProperty("multi_turn").GetInt32());
        Assert.Equal("expert", root.GetProperty("source").GetString());
        Assert.Equal(root.GetProperty("kept").GetInt32(), SftDataset.Read(Path.Combine(output, "train.jsonl")).Count);
        Assert.Contains("40/40 judged", err);
        Assert.True(File.Exists(Path.Combine(output, "summary.json")));

        var (code2, text, _) = await Run("synth", "--job", job, "--out", output, "--count", "40");
        Assert.Equal(0, code2);
        Assert.StartsWith("synth: kept ", text);
    }

    [Fact]
    public async Task CheckpointSourceRunsTheModelThroughTheEnvironmentsAndJudgesIt()
    {
        using var checkpoint = new RandomCheckpoint(
            ModelConfig.Load(ModelCommandInfoTests.Preset("k2-test")) with { VocabSize = 272, MaxPositionEmbeddings = 4096 }, seed: 4, prefix: "k2rl-synthck-");
        string job = Job($"seed: 2\ntrajectories: 6\ngenerator: {{kind: checkpoint, path: {checkpoint.Dir}, max_tokens: 8, batch: 4}}\n" +
                         "envs:\n  arithmetic: {weight: 1}\n  tool_use: {weight: 1}\n");
        string output = Path.Combine(dir, "engine");
        var (code, json, err) = await Run("synth", "--job", job, "--out", output, "--json");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        Assert.Equal(6, root.GetProperty("judged").GetInt32());
        Assert.StartsWith("checkpoint:", root.GetProperty("source").GetString());
        Assert.Equal(1, root.GetProperty("workers").GetInt32());

        // A random model's 8-token replies do not answer: each is rejected with the environment's reason, counted.
        int rejected = root.GetProperty("rejected").GetInt32();
        Assert.Equal(6 - root.GetProperty("kept").GetInt32() - root.GetProperty("duplicates").GetInt32(), rejected);
        int counted = root.GetProperty("rejected_by_reason").EnumerateObject().Sum(p => p.Value.GetInt32());
        Assert.Equal(rejected, counted);
        foreach (string line in File.ReadAllLines(Path.Combine(output, "rejected.jsonl")))
        {
            using var r = JsonDocument.Parse(line);
            var verdict = r.RootElement.GetProperty("verdict");
            Assert.False(verdict.GetProperty("kept").GetBoolean());
            Assert.NotEqual("", verdict.GetProperty("reason").GetString());
            Assert.StartsWith("checkpoint:", r.RootElement.GetProperty("provenance").GetProperty("source").GetString());
            Assert.Equal("assistant", r.RootElement.GetProperty("messages")[2].GetProperty("role").GetString());   // the model's action
        }
    }

    [Fact]
    public async Task AnEnvsOwnCheckpointGeneratorPlaysThatEnvAndTheExpertTheRest()
    {
        using var checkpoint = new RandomCheckpoint(
            ModelConfig.Load(ModelCommandInfoTests.Preset("k2-test")) with { VocabSize = 272, MaxPositionEmbeddings = 4096 }, seed: 5, prefix: "k2rl-synthmix-");
        string job = Job("seed: 2\ntrajectories: 12\nenvs:\n  list_ops: {weight: 1}\n" +
                         $"  countdown: {{weight: 1, generator: {{kind: checkpoint, path: {checkpoint.Dir}, max_tokens: 8, batch: 4}}}}\n");
        string output = Path.Combine(dir, "mixed");
        var (code, json, err) = await Run("synth", "--job", job, "--out", output, "--json");
        Assert.True(code == 0, err);
        Assert.Contains($"list_ops from expert, countdown from checkpoint:{checkpoint.Dir}", err);
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        Assert.Equal("mixed", root.GetProperty("source").GetString());
        var byEnv = root.GetProperty("by_env");
        Assert.Equal("expert", byEnv.GetProperty("list_ops").GetProperty("source").GetString());
        Assert.Equal($"checkpoint:{checkpoint.Dir}", byEnv.GetProperty("countdown").GetProperty("source").GetString());
        Assert.Equal(6, byEnv.GetProperty("list_ops").GetProperty("kept").GetInt32() + byEnv.GetProperty("list_ops").GetProperty("duplicates").GetInt32());
        Assert.Equal(6, byEnv.GetProperty("countdown").GetProperty("judged").GetInt32());
        foreach (var record in SftDataset.Read(Path.Combine(output, "train.jsonl")).Where(r => r.Env == "list_ops"))
        {
            Assert.Equal("expert", JsonDocument.Parse(record.ProvenanceJson!).RootElement.GetProperty("source").GetString());
        }
    }

    [Fact]
    public async Task MalformedJobFileIsAnErrorNamingFileAndLine()
    {
        string job = Job("trajectories: 10\nenvs:\n  arithmetic: {weight: 1}\n  countdwn: {weight: 1}\n");
        var (code, json, err) = await Run("synth", "--job", job, "--out", Path.Combine(dir, "x"), "--json");
        Assert.Equal(1, code);
        Assert.Equal("", json);
        Assert.Contains($"{job}:4:3: unknown environment \"envs.countdwn\"", err);
        Assert.False(Directory.Exists(Path.Combine(dir, "x")));

        var (code2, _, err2) = await Run("synth", "--job", Path.Combine(dir, "missing.yaml"), "--out", Path.Combine(dir, "x"));
        Assert.Equal(1, code2);
        Assert.Contains("missing.yaml", err2);
    }
}
