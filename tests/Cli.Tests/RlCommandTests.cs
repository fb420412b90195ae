using System.Text.Json;
using System.Text.Json.Nodes;

namespace K2RL.Cli.Tests;

/// <summary><c>k2rl rl</c> in-process: the job's metrics, its checks of bad job files, and exact resume.</summary>
public sealed class RlCommandTests
{
    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => ModelCommandInfoTests.Run(args);

    [Fact]
    public async Task ATinyRunWritesEveryMetricAndACheckpointLoadableAsAModel()
    {
        K2RL.Tests.Shared.ExternalTools.RequireFonts();   // plot's texts need a font
        using var jobs = new RlTestJobs(iterations: 2);
        string run = jobs.RunDir("a");
        var (code, stdout, err) = await Run("rl", "--job", jobs.JobPath, "--run-dir", run);
        Assert.True(code == 0, err);
        var result = JsonNode.Parse(stdout)!;   // stdout is one JSON object
        Assert.Equal("completed", result["reason"]!.GetValue<string>());
        Assert.Equal(2, result["iteration"]!.GetValue<long>());

        var lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl"));
        Assert.Equal(2, lines.Length);
        var m = JsonNode.Parse(lines[^1])!.AsObject();
        foreach (string f in new[] { "iteration", "version", "temperature", "loss_rl", "loss_ptx", "logprob_mismatch_mean", "logprob_mismatch_max",
                     "kl_to_old", "max_logit", "clipped_heads", "expert_load_max_over_mean", "critic_accuracy", "partial_paused", "partial_resumed",
                     "generate_s", "score_s", "train_s", "push_s", "other_s", "envs", "held_out" })
        {
            Assert.True(m.ContainsKey(f), $"metrics line lacks \"{f}\": {lines[^1]}");
        }

        Assert.Equal(2, m["version"]!.GetValue<long>());   // one push per iteration
        Assert.Equal(1.2 * Math.Pow(0.8 / 1.2, 1 / 2.0), m["temperature"]!.GetValue<double>(), 6);   // exponential, horizon 2
        foreach (var (_, env) in m["envs"]!.AsObject())
        {
            foreach (string f in new[] { "reward_mean", "accuracy", "truncation_rate", "response_tokens_mean", "response_tokens_max" })
            {
                Assert.True(env!.AsObject().ContainsKey(f), f);
            }

            Assert.InRange(env!["response_tokens_max"]!.GetValue<int>(), 1, 12);   // the budget holds
        }

        // f32 rollout weights: the engine's recorded log-probs match the trainer's on the same version.
        Assert.True(m["logprob_mismatch_max"]?.GetValue<double>() <= 1e-4, lines[^1]);
        Assert.True(m["logprob_mismatch_mean"]?.GetValue<double>() <= 1e-5, lines[^1]);
        // Routing replay is on by default: the trainer replays the engine's records, and a misaligned record (a token's
        // routing put at another position) would disagree with the trainer's own choice almost everywhere.
        Assert.InRange(m["routing_flips"]!.GetValue<long>(), 0, 2);

        // k2rl plot recognizes an RL run and draws its curves.
        var (pcode, plotOut, perr) = await Run("plot", "--run-dir", run);
        Assert.True(pcode == 0, perr);
        foreach (string chart in new[] { "reward", "accuracy", "length", "temperature", "timing" })
        {
            Assert.Contains(Path.Combine(run, "plots", chart + ".png"), plotOut);
            Assert.Contains(Path.Combine(run, "plots", chart + ".svg"), plotOut);
            Assert.Equal((800, 450), Figures.PngSize(Path.Combine(run, "plots", chart + ".png")));
            Assert.NotEmpty(Figures.ReadSvg(Path.Combine(run, "plots", chart + ".svg")).LineColors);
        }

        // The checkpoint is a model directory: generate reads it.
        string latest = Path.Combine(run, File.ReadAllText(Path.Combine(run, "LATEST")).Trim());
        var (gcode, _, gerr) = await Run("generate", "--checkpoint", latest, "--prompt", "1+1", "--max-tokens", "3", "--seed", "1");
        Assert.True(gcode == 0, gerr);
    }

    [Fact]
    public async Task ResumeReproducesTheUninterruptedRunIterationForIteration()
    {
        using var jobs = new RlTestJobs(iterations: 4, every: 1);
        string reference = jobs.RunDir("reference"), resumed = jobs.RunDir("resumed");
        Assert.Equal(0, (await Run("rl", "--job", jobs.JobPath, "--run-dir", reference)).Code);
        Assert.Equal(0, (await Run("rl", "--job", jobs.JobPath, "--run-dir", resumed, "--max-iterations", "2")).Code);
        var (code, _, err) = await Run("rl", "--job", jobs.JobPath, "--run-dir", resumed, "--resume");
        Assert.True(code == 0, err);
        Assert.Equal(RlTestJobs.Deterministic(reference), RlTestJobs.Deterministic(resumed));
    }

    [Fact]
    public async Task PartialRolloutsPauseAndResumeAcrossIterationsAndAcrossAResume()
    {
        using var jobs = new RlTestJobs(iterations: 4, every: 1, tokenBudget: 14);
        string reference = jobs.RunDir("reference"), resumed = jobs.RunDir("resumed");
        Assert.Equal(0, (await Run("rl", "--job", jobs.JobPath, "--run-dir", reference)).Code);
        var metrics = File.ReadAllLines(Path.Combine(reference, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Contains(metrics, m => m["partial_paused"]!.GetValue<int>() > 0);
        Assert.Contains(metrics, m => m["partial_resumed"]!.GetValue<int>() > 0);

        Assert.Equal(0, (await Run("rl", "--job", jobs.JobPath, "--run-dir", resumed, "--max-iterations", "1")).Code);
        string state = File.ReadAllText(Path.Combine(resumed, "checkpoints", "step-1", "rl_state.json"));
        Assert.NotEmpty(JsonNode.Parse(state)!["paused"]!.AsArray());   // paused episodes travel in the checkpoint
        Assert.Equal(0, (await Run("rl", "--job", jobs.JobPath, "--run-dir", resumed, "--resume")).Code);
        Assert.Equal(RlTestJobs.Deterministic(reference), RlTestJobs.Deterministic(resumed));
    }

    [Theory]
    [InlineData("seeed: 4", "unknown key \"seeed\"")]
    [InlineData("iterations: many", "\"iterations\"")]
    [InlineData("envs:\n  no_such_env: {weight: 1}", "no environment named \"no_such_env\"")]
    [InlineData("envs:\n  arithmetic: {episode_timeout_s: 0}", "episode_timeout_s")]
    [InlineData("envs:\n  arithmetic: {max_turns: 0}", "max_turns")]
    public async Task ABadJobFileIsRefusedNamingFileAndLineBeforeAnyWork(string bad, string expected)
    {
        using var jobs = new RlTestJobs();
        var lines = File.ReadAllLines(jobs.JobPath).ToList();
        string key = bad.Split(':')[0];
        int at = lines.FindIndex(l => l.StartsWith(key + ":", StringComparison.Ordinal));
        if (at >= 0)
        {
            int end = at + 1;
            while (end < lines.Count && lines[end].StartsWith(' '))
            {
                end++;
            }

            lines.RemoveRange(at, end - at);
            lines.Insert(at, bad);
        }
        else
        {
            lines.Add(bad);
            at = lines.Count - 1;
        }

        File.WriteAllLines(jobs.JobPath, lines);
        string run = jobs.RunDir("bad");
        var (code, stdout, err) = await Run("rl", "--job", jobs.JobPath, "--run-dir", run);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains(expected, err);
        Assert.Contains($"{jobs.JobPath}:{at + 1 + (bad.StartsWith("envs", StringComparison.Ordinal) ? 1 : 0)}", err);
        Assert.False(File.Exists(Path.Combine(run, "metrics.jsonl")));
    }

    [Fact]
    public async Task ABaseWhoseConfigDoesNotMatchTheJobsModelIsRefused()
    {
        using var jobs = new RlTestJobs(extra: "model: other.json");
        var other = JsonNode.Parse(File.ReadAllText(Path.Combine(jobs.BaseDir, "config.json")))!.AsObject();
        other["hidden_size"] = 64;
        File.WriteAllText(Path.Combine(jobs.Dir, "other.json"), other.ToJsonString());
        var (code, _, err) = await Run("rl", "--job", jobs.JobPath, "--run-dir", jobs.RunDir("x"));
        Assert.Equal(1, code);
        Assert.Contains("does not match the base checkpoint", err);
    }

    [Fact]
    public async Task AnEnvironmentScoredByTheSelfCriticGetsWinRateRewardsAndTheClosedLoopRuns()
    {
        // arithmetic judged by the policy itself (no verifier reward), list_ops by its verifier; calibration pairs on the latter.
        using var jobs = new RlTestJobs(iterations: 2);
        File.WriteAllText(jobs.JobPath, File.ReadAllText(jobs.JobPath)
            .Replace("max_response_tokens: 12}", "max_response_tokens: 12, reward: critic, tags: [math]}"));
        string run = jobs.RunDir("critic");
        var (code, _, err) = await Run("rl", "--job", jobs.JobPath, "--run-dir", run);
        Assert.True(code == 0, err);
        var lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        var criticEnv = lines.Select(m => m["envs"]?["arithmetic"]).Where(e => e is not null).ToList();
        Assert.NotEmpty(criticEnv);
        foreach (var e in criticEnv)
        {
            Assert.Null(e!["accuracy"]);   // no verifier verdict is claimed for a critic-scored env
            double reward = e["reward_mean"]!.GetValue<double>();
            Assert.InRange(reward, -0.5, 1);   // win rates in [0, 1], truncated responses capped at -0.5
        }
    }

    [Theory]
    [InlineData("full", true)]
    [InlineData("brief", false)]
    public async Task ACriticPromptLongerThanTheContextIsCountedAsRefusedAndBriefRubricsFitIt(string detail, bool refused)
    {
        // One rubric with long criteria: with them the comparison prompt is over the test model's 512-token (byte-level)
        // context, without them well under it.
        using var jobs = new RlTestJobs(iterations: 2);
        string rubrics = Path.Combine(jobs.Dir, "rubrics");
        Directory.CreateDirectory(rubrics);
        string criteria = string.Concat(Enumerable.Range(1, 6).Select(i =>
            $"      - Criterion {i}, the response states each step of its working in order, names what it computes, and checks the result once more.\n"));
        File.WriteAllText(Path.Combine(rubrics, "core.yaml"), $"kind: core\nrubrics:\n  - name: steps\n    description: Shows its steps.\n    criteria:\n{criteria}");
        File.WriteAllText(jobs.JobPath, File.ReadAllText(jobs.JobPath)
            .Replace("max_response_tokens: 12}", "max_response_tokens: 12, reward: critic, tags: [math]}")
            .Replace("critic:\n", $"critic:\n  rubrics: {rubrics}\n  rubric_detail: {detail}\n"));
        string run = jobs.RunDir(detail);
        var (code, _, err) = await Run("rl", "--job", jobs.JobPath, "--run-dir", run);
        Assert.True(code == 0, err);
        var lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        int total = lines.Sum(m => m["critic_refused"]!.GetValue<int>());
        bool judged = lines.Any(m => m["envs"]?["arithmetic"] is not null || m["critic_pairs"]!.GetValue<int>() > 0);
        Assert.True(judged, "no comparison was asked in two iterations: the test proves nothing");
        string log = string.Concat(Directory.GetFiles(Path.Combine(run, "logs")).Select(File.ReadAllText));
        if (refused)
        {
            Assert.True(total > 0, "no comparison prompt was refused");
            Assert.Contains("the critic's engine refused", log);
            Assert.Contains("does not fit the context", log);
        }
        else
        {
            Assert.Equal(0, total);
            Assert.DoesNotContain("the critic's engine refused", log);
        }
    }

    [Fact]
    public void MetricsAreParseableJsonEvenWithNaN()
    {
        var m = new K2RL.Trainer.Rl.RlMetrics { Iteration = 1, CriticAccuracy = double.NaN, LossPtx = double.PositiveInfinity };
        using var doc = JsonDocument.Parse(m.ToJson());
        Assert.Equal(JsonValueKind.Null, doc.RootElement.GetProperty("critic_accuracy").ValueKind);
        Assert.Equal(JsonValueKind.Null, doc.RootElement.GetProperty("loss_ptx").ValueKind);
    }
}
