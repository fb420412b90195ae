using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common.Chat;
using K2RL.Gym.Eval;
using K2RL.Gym.Synthesis;
using K2RL.Gym.Tasks;

namespace K2RL.Gym.Tests;

/// <summary>
/// The synthesis pipeline with the expert source: every kept Gym trajectory is what the real environment presents and
/// rewards (checked by an independent replay), comes from the train split only, and the output is deterministic.
/// </summary>
public sealed class SynthPipelineTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "k2rl-synth-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(dir))
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    internal static SynthJob Job(int n, params (string Env, double Weight)[] envs) => new()
    {
        Trajectories = n,
        Seed = 3,
        Envs = envs.Select(e => new SynthEnvSpec(e.Env, e.Weight, [1, 2, 3], [1, 1, 1])).ToList(),
    };

    private static readonly (string, double)[] GymEnvs = [("arithmetic", 1), ("countdown", 1), ("list_ops", 1), ("tool_use", 1)];

    [Fact]
    public async Task KeptGymTrajectoriesReplayExactlyInTheirEnvironmentAndAreRewarded()
    {
        var summary = await SynthesisPipeline.RunAsync(Job(120, GymEnvs), dir);
        Assert.Equal(120, summary.Judged);
        Assert.Equal(0, summary.Rejected);
        Assert.Equal(120, summary.Kept + summary.Duplicates);
        var records = SftDataset.Read(Path.Combine(dir, SynthesisPipeline.TrainFile));
        Assert.Equal(summary.Kept, records.Count);
        Assert.Equal(4, records.Select(r => r.Env).Distinct().Count());
        var registry = GymRegistry.CreateDefault();
        foreach (var record in records)
        {
            Assert.Equal(new SftVerdict(true, "verifier", "correct"), record.Verdict);
            await AssertReplays(registry, record);
        }
    }

    [Fact]
    public async Task AnEnvWithItsOwnGeneratorIsPlayedByItsModelAndTheOthersAreUnchanged()
    {
        var model = new SynthGeneratorSpec { Kind = SynthGeneratorSpec.Checkpoint, Path = "runs/m", Batch = 5 };
        var expertOnly = Job(60, ("arithmetic", 1), ("countdown", 1), ("list_ops", 1));
        var mixed = expertOnly with { Envs = expertOnly.Envs.Select(e => e.Name == "countdown" ? e with { Generator = model } : e).ToList() };
        int requests = 0, batches = 0;
        var scripted = new ScriptedPolicy(r =>
        {
            Interlocked.Increment(ref requests);
            Assert.Contains("target", r.Conversation[^1].Content, StringComparison.OrdinalIgnoreCase);   // only countdown's prompts
            return "Answer: 1 + 1";
        });
        var counting = new CountingPolicy(scripted, () => batches++);

        var summary = await SynthesisPipeline.RunAsync(mixed, Path.Combine(dir, "mixed"), new SynthRunOptions
        {
            ModelSources = new Dictionary<SynthGeneratorSpec, SynthModelSource> { [model] = new(counting, "checkpoint:runs/m") },
        });
        await SynthesisPipeline.RunAsync(expertOnly, Path.Combine(dir, "expert"));

        Assert.Equal("mixed", summary.Source);
        Assert.Equal("checkpoint:runs/m", summary.ByEnv["countdown"].Source);
        Assert.Equal("expert", summary.ByEnv["arithmetic"].Source);
        Assert.Equal(summary.ByEnv["countdown"].Judged, requests);              // one turn each, every one from the model
        Assert.Equal((requests + 4) / 5, batches);                             // in the generator's batches of 5
        Assert.Equal(summary.ByEnv["countdown"].Judged, summary.ByEnv["countdown"].Rejected);   // "1 + 1" solves none
        foreach (string line in File.ReadLines(Path.Combine(dir, "mixed", SynthesisPipeline.RejectedFile)))
        {
            var node = JsonNode.Parse(line)!;
            Assert.Equal("countdown", (string?)node["env"]);
            Assert.Equal("checkpoint:runs/m", (string?)node["provenance"]!["source"]);
        }

        // The expert's envs get the same records, in the same order, as in the job without the model.
        string[] Lines(string run) => File.ReadLines(Path.Combine(dir, run, SynthesisPipeline.TrainFile))
            .Where(l => (string?)JsonNode.Parse(l)!["env"] != "countdown").ToArray();
        Assert.Equal(Lines("expert"), Lines("mixed"));
        Assert.NotEmpty(Lines("mixed"));
    }

    [Fact]
    public async Task AnEnvGeneratorWithoutItsModelIsAnErrorNamingTheEnv()
    {
        var job = Job(10, ("arithmetic", 1), ("countdown", 1));
        job = job with { Envs = [job.Envs[0], job.Envs[1] with { Generator = new SynthGeneratorSpec { Kind = SynthGeneratorSpec.Http, Url = "http://127.0.0.1:1/v1" } }] };
        var e = await Assert.ThrowsAsync<K2RL.Common.ConfigException>(() => SynthesisPipeline.RunAsync(job, dir));
        Assert.Contains("envs.countdown: its http generator has no model to play it", e.Message);
        Assert.False(File.Exists(Path.Combine(dir, SynthesisPipeline.TrainFile)));
    }

    private sealed class CountingPolicy(IPolicy inner, Action onBatch) : IPolicy
    {
        public Task<IReadOnlyList<string>> GenerateAsync(IReadOnlyList<PolicyRequest> requests, CancellationToken ct = default)
        {
            onBatch();
            return inner.GenerateAsync(requests, ct);
        }
    }

    [Fact]
    public async Task WithDetailedSolutionsTheExpertPlaysThemWhereTheGeneratorHasThemAndTheyAreRewarded()
    {
        var job = Job(90, ("arithmetic", 1), ("list_ops", 1), ("countdown", 1)) with { Generator = new SynthGeneratorSpec { Solutions = SynthGeneratorSpec.Detailed } };
        var summary = await SynthesisPipeline.RunAsync(job, dir);
        Assert.Equal(0, summary.Rejected);
        var records = SftDataset.Read(Path.Combine(dir, SynthesisPipeline.TrainFile));
        Assert.Equal(3, records.Select(r => r.Env).Distinct().Count());
        var registry = GymRegistry.CreateDefault();
        foreach (var record in records)
        {
            long seed = JsonNode.Parse(record.ProvenanceJson!)!["seed"]!.GetValue<long>();
            var task = registry.GetEnvironment(record.Env!).Generator!.Generate(seed, Split.Train, record.Difficulty!.Value);
            Assert.NotNull(task.DetailedSolution);
            Assert.Equal(task.DetailedSolution, record.Messages[^1].Content);
            await AssertReplays(registry, record);
        }
    }

    /// <summary>A fresh environment, reset from the record's provenance, presents the record's prompt, tools and tool results, and rewards its answer.</summary>
    private static async Task AssertReplays(GymRegistry registry, SftRecord record)
    {
        var provenance = JsonNode.Parse(record.ProvenanceJson!)!;
        await using var env = registry.CreateEnvironment(record.Env!);
        var obs = await env.ResetAsync(provenance["seed"]!.GetValue<long>(), new ResetOptions { Split = Split.Train, Difficulty = record.Difficulty!.Value });
        int at = obs.Messages.Count;
        Assert.Equal(obs.Messages, record.Messages.Take(at));
        Assert.Equal(obs.Tools, record.Tools);
        StepResult? last = null;
        while (at < record.Messages.Count)
        {
            var m = record.Messages[at++];
            Assert.Equal(Role.Assistant, m.Role);
            last = await env.StepAsync(m.Content + (m.ToolCalls is { Count: > 0 } c ? ChatFormat.FormatToolCalls(c) : ""));
            if (!last.Done)
            {
                foreach (var o in last.Observation.Messages)
                {
                    Assert.Equal(o, record.Messages[at++]);
                }
            }
        }

        Assert.True(last!.Terminated);
        Assert.True(last.Info.Correct);
        Assert.Equal(1, last.Reward);
    }

    [Fact]
    public async Task OnlyTrainTasksAreDrawnAndNoHeldOutEvalTaskAppears()
    {
        await SynthesisPipeline.RunAsync(Job(600, GymEnvs) with { Seed = 11 }, dir);
        var records = SftDataset.Read(Path.Combine(dir, SynthesisPipeline.TrainFile));
        var prompts = records.Select(r => r.Messages.First(m => m.Role == Role.User).Content).ToHashSet();
        var registry = GymRegistry.CreateDefault();
        foreach (var record in records)
        {
            string kind = registry.GetEnvironment(record.Env!).Generator!.Kind;
            Assert.Equal(Split.Train, SplitAssigner.SplitOf(kind, JsonNode.Parse(record.ProvenanceJson!)!["task_id"]!.GetValue<string>()));
        }

        // The tasks `k2rl gym eval ENV --n 50 --difficulty 1|2` draws (held-out seeds 0..49) never appear.
        foreach (var env in new[] { "arithmetic", "countdown", "list_ops", "tool_use" })
        {
            var generator = registry.GetEnvironment(env).Generator!;
            for (int d = 1; d <= 2; d++)
            {
                for (int seed = 0; seed < 50; seed++)
                {
                    Assert.DoesNotContain(generator.Generate(seed, Split.HeldOut, d).Prompt, prompts);
                }
            }
        }
    }

    [Fact]
    public async Task OutputIsTheSameWhateverTheWorkersAndDuplicatesAreDropped()
    {
        var job = Job(300, [.. GymEnvs, ("agentic", 1)]);
        var one = await SynthesisPipeline.RunAsync(job with { Workers = 1 }, Path.Combine(dir, "one"));
        var two = await SynthesisPipeline.RunAsync(job with { Workers = 2 }, Path.Combine(dir, "two"));
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir, "one", SynthesisPipeline.TrainFile)), File.ReadAllBytes(Path.Combine(dir, "two", SynthesisPipeline.TrainFile)));
        Assert.Equal(one.Kept, two.Kept);
        var ids = SftDataset.Read(Path.Combine(dir, "one", SynthesisPipeline.TrainFile)).Select(r => r.Id).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());

        // Countdown at difficulty 1 has few distinct tasks: a larger run meets repeats, which are counted, not written.
        var many = await SynthesisPipeline.RunAsync(Job(400, ("countdown", 1)) with { Envs = [new SynthEnvSpec("countdown", 1, [1], [1])] }, Path.Combine(dir, "dup"));
        Assert.True(many.Duplicates > 0);
        Assert.Equal(400, many.Kept + many.Duplicates);
        var rejected = File.ReadAllLines(Path.Combine(dir, "dup", SynthesisPipeline.RejectedFile));
        Assert.Equal(many.Duplicates, rejected.Length);
        Assert.All(rejected, l => Assert.Contains("\"judge\":\"duplicate\"", l));
    }

    [Fact]
    public async Task SummaryCountsPerEnvAndDifficultyAndIsWrittenLast()
    {
        var summary = await SynthesisPipeline.RunAsync(Job(90, ("arithmetic", 2), ("agentic", 1)), dir);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, SynthesisPipeline.SummaryFile)))!;
        Assert.Equal(SynthSummary.Schema, json["schema"]!.GetValue<string>());
        Assert.Equal(90, json["judged"]!.GetValue<int>());
        Assert.Equal(60, json["by_env"]!["arithmetic"]!["judged"]!.GetValue<int>());
        Assert.Equal(30, json["by_env"]!["agentic"]!["judged"]!.GetValue<int>());
        Assert.Equal(30, json["by_env"]!["agentic"]!["multi_turn"]!.GetValue<int>());
        Assert.Equal(summary.Kept, json["by_env"]!.AsObject().Sum(e => e.Value!["kept"]!.GetValue<int>()));
        Assert.Equal(SynthesisPipeline.TrainFile, summary.Files[0]);
        Assert.Equal(SynthesisPipeline.SummaryFile, summary.Files[^1]);
    }

    [Fact]
    public async Task ShardsHoldTheConfiguredRecordsAndAnEarlierRunsFilesAreReplaced()
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "train-00007.jsonl"), "stale");
        File.WriteAllText(Path.Combine(dir, SynthesisPipeline.RejectedFile), "stale");
        File.WriteAllText(Path.Combine(dir, "notes.txt"), "mine");
        var summary = await SynthesisPipeline.RunAsync(Job(60, ("list_ops", 1)) with { ShardRecords = 25 }, dir);
        Assert.Equal(60, summary.Kept);
        Assert.Equal(["train-00000.jsonl", "train-00001.jsonl", "train-00002.jsonl", SynthesisPipeline.SummaryFile], summary.Files);
        Assert.Equal([25, 25, 10], summary.Files.SkipLast(1).Select(f => SftDataset.Read(Path.Combine(dir, f)).Count));
        Assert.False(File.Exists(Path.Combine(dir, "train-00007.jsonl")));
        Assert.False(File.Exists(Path.Combine(dir, SynthesisPipeline.RejectedFile)));   // nothing rejected this time
        Assert.Equal("mine", File.ReadAllText(Path.Combine(dir, "notes.txt")));
    }

    [Fact]
    public void PlanSplitsExactlyByWeightsAndDifficulties()
    {
        Assert.Equal([3, 3, 1], SynthPlan.Split(7, [1, 1, 0.5]));
        Assert.Equal([0, 10], SynthPlan.Split(10, [0, 2]));
        var plan = SynthPlan.Build(new SynthJob
        {
            Trajectories = 1000,
            Envs = [new SynthEnvSpec("arithmetic", 3, [1, 2, 3], [2, 2, 1]), new SynthEnvSpec("agentic", 1, [2], [1])],
        });
        Assert.Equal(1000, plan.Count);
        Assert.Equal(Enumerable.Range(0, 1000), plan.Select(p => p.Index));
        Assert.Equal(750, plan.Count(p => p.Env == "arithmetic"));
        Assert.Equal(300, plan.Count(p => p.Env == "arithmetic" && p.Difficulty == 1));
        Assert.Equal(150, plan.Count(p => p.Env == "arithmetic" && p.Difficulty == 3));
        Assert.Equal(250, plan.Count(p => p is { Env: "agentic", Difficulty: 2 }));
        Assert.Equal(2, plan.Take(100).Select(p => p.Env).Distinct().Count());   // shuffled, not grouped by env
    }
}
