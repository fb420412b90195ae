using System.Text.Json;
using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Model.Tokenization;

namespace K2RL.Cli.Tests;

/// <summary>
/// <c>k2rl gym eval</c> end to end over a randomly initialized tiny checkpoint (k2-test shapes, vocabulary widened to
/// the byte-level tokenizer, longer context).
/// </summary>
public sealed class GymEvalCommandTests : IDisposable
{
    private readonly RandomCheckpoint checkpoint = new(
        ModelConfig.Load(ModelCommandInfoTests.Preset("k2-test")) with { VocabSize = 272, MaxPositionEmbeddings = 4096 },
        seed: 4, prefix: "k2rl-gymeval-");

    private string dir => checkpoint.Dir;

    public void Dispose() => checkpoint.Dispose();

    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => ModelCommandInfoTests.Run(args);

    [Fact]
    public async Task JsonIsOneObjectWithAccuracyAndPassAtKAndRepeatsForASeed()
    {
        string[] args = ["gym", "eval", "arithmetic", "--checkpoint", dir, "--n", "3", "--k", "2", "--max-tokens", "6", "--seed", "7", "--json"];
        var (code, json, err) = await Run(args);
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(json);   // the whole of stdout is one JSON object
        var root = doc.RootElement;
        Assert.Equal("arithmetic", root.GetProperty("env").GetString());
        Assert.Equal(3, root.GetProperty("n").GetInt32());
        Assert.Equal(2, root.GetProperty("k").GetInt32());
        Assert.Equal(1.0, root.GetProperty("temperature").GetDouble());   // k > 1 samples by default
        var passAtK = root.GetProperty("pass_at_k");
        Assert.Equal(["1", "2"], passAtK.EnumerateObject().Select(p => p.Name));

        // 3 tasks × 2 samples: accuracy counts correct samples out of 6, pass@1 is that same fraction, and a
        // second try can only add to it.
        double accuracy = root.GetProperty("accuracy").GetDouble();
        Assert.Equal(Math.Round(accuracy * 6), accuracy * 6, 9);
        Assert.Equal(accuracy, passAtK.GetProperty("1").GetDouble(), 9);
        Assert.InRange(passAtK.GetProperty("2").GetDouble(), accuracy - 1e-9, 1);
        Assert.Equal(6, root.GetProperty("turns").GetInt64());   // single-turn: one turn per episode
        Assert.InRange(root.GetProperty("tokens").GetInt64(), 6, 36);
        Assert.Contains("batch 1: 6 episodes", err);

        var (code2, json2, _) = await Run(args);
        Assert.Equal(0, code2);
        using var doc2 = JsonDocument.Parse(json2);
        foreach (string field in new[] { "accuracy", "pass_at_k", "mean_return", "tokens", "truncated" })
        {
            Assert.Equal(root.GetProperty(field).GetRawText(), doc2.RootElement.GetProperty(field).GetRawText());
        }
    }

    [Fact]
    public async Task MultiTurnToolEnvironmentRunsWithTheDefaultGreedyPolicy()
    {
        var (code, json, err) = await Run("gym", "eval", "tool_use", "--checkpoint", dir, "--n", "2", "--max-tokens", "4", "--json");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        Assert.Equal(2, root.GetProperty("n").GetInt32());
        Assert.Equal(0.0, root.GetProperty("temperature").GetDouble());
        Assert.Contains(root.GetProperty("accuracy").GetDouble(), new[] { 0.0, 0.5, 1.0 });   // correct episodes out of 2
        Assert.True(root.GetProperty("turns").GetInt64() >= 2);
        Assert.Equal(0, root.GetProperty("refused").GetInt64());
    }

    [Fact]
    public async Task TranscriptsHoldEveryEpisodesConversationAndVerdict()
    {
        string file = Path.Combine(Path.GetTempPath(), "k2rl-transcripts-" + Guid.NewGuid().ToString("N")[..8] + ".jsonl");
        try
        {
            var (code, json, err) = await Run("gym", "eval", "tool_use", "--checkpoint", dir, "--n", "3", "--task-seed", "5", "--max-tokens", "4",
                "--transcripts", file, "--json");
            Assert.True(code == 0, err);
            using var report = JsonDocument.Parse(json);
            var lines = File.ReadAllLines(file).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            Assert.Equal(3, lines.Count);
            Assert.Equal([5L, 6L, 7L], lines.Select(l => l.GetProperty("task_seed").GetInt64()));
            Assert.All(lines, l => Assert.Equal("tool_use", l.GetProperty("env").GetString()));
            // the verdicts add up to the report's accuracy; each conversation is system, user, then the policy's turns
            Assert.Equal(report.RootElement.GetProperty("accuracy").GetDouble() * 3, lines.Count(l => l.GetProperty("correct").GetBoolean()), 9);
            long turns = 0;
            foreach (var l in lines)
            {
                var roles = l.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("role").GetString()).ToList();
                Assert.Equal(["system", "user"], roles.Take(2));
                Assert.Contains("How much do", l.GetProperty("messages")[1].GetProperty("content").GetString());
                turns += roles.Count(r => r == "assistant");
            }

            Assert.Equal(report.RootElement.GetProperty("turns").GetInt64(), turns);

            var (bad, _, badErr) = await Run("gym", "eval", "tool_use", "--checkpoint", dir, "--n", "1", "--transcripts", "/nonexistent-dir/t.jsonl");
            Assert.True(bad == 1 && badErr.Contains("--transcripts /nonexistent-dir/t.jsonl: its directory does not exist"), badErr);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task TextOutputListsAccuracyAndPassAtK()
    {
        var (code, text, err) = await Run("gym", "eval", "list_ops", "--checkpoint", dir, "--n", "2", "--max-tokens", "3");
        Assert.True(code == 0, err);
        Assert.Contains("list_ops: 2 held-out tasks x 1 samples", text);
        Assert.Contains("accuracy", text);
        Assert.Contains("pass@1", text);
    }

    [Fact]
    public async Task EvalBaseGeneratesThroughTheSamePolicyAndAgreesWithGymEval()
    {
        Checksums.WriteManifest(dir);   // eval-base reads trainer checkpoints, which carry a MANIFEST
        var (code, lines, err) = await Run("eval-base", "--checkpoint", dir, "--task", "arithmetic", "list_ops", "--tasks", "3",
            "--max-new-tokens", "5", "--seed", "2");
        Assert.True(code == 0, err);
        var rows = lines.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        // One row per kind and difficulty (default 1 2 3), so RL can see where the reward is non-zero.
        Assert.Equal(["arithmetic/1", "arithmetic/2", "arithmetic/3", "list_ops/1", "list_ops/2", "list_ops/3"],
            rows.Select(r => $"{r.GetProperty("kind").GetString()}/{r.GetProperty("difficulty").GetInt32()}"));
        Assert.All(rows, r => Assert.Equal(3, r.GetProperty("tasks").GetInt32()));
        Assert.All(rows, r => Assert.InRange(r.GetProperty("mean_response_tokens").GetDouble(), 1, 5));
        Assert.Contains("arithmetic d1 sample: ", err);

        // The same held-out tasks, greedy, through gym eval: the same number correct.
        var (code2, json, err2) = await Run("gym", "eval", "arithmetic", "--checkpoint", dir, "--n", "3", "--task-seed", "2",
            "--max-tokens", "5", "--json");
        Assert.True(code2 == 0, err2);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal(rows[0].GetProperty("accuracy").GetDouble(), doc.RootElement.GetProperty("accuracy").GetDouble(), 9);
        Assert.Equal(rows[0].GetProperty("mean_response_tokens").GetDouble(),
            doc.RootElement.GetProperty("tokens").GetInt64() / 3.0, 1);
    }

    [Fact]
    public async Task EvalBaseReportsTheDifficultiesAskedFor()
    {
        Checksums.WriteManifest(dir);
        var (code, lines, err) = await Run("eval-base", "--checkpoint", dir, "--task", "countdown", "--tasks", "2",
            "--difficulty", "2", "4", "--max-new-tokens", "3");
        Assert.True(code == 0, err);
        var rows = lines.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal([2, 4], rows.Select(r => r.GetProperty("difficulty").GetInt32()));
        Assert.Contains("countdown d4 sample: ", err);

        var (code2, _, err2) = await Run("eval-base", "--checkpoint", dir, "--difficulty", "0");
        Assert.Equal(1, code2);
        Assert.Contains("--difficulty must be >= 1", err2);
    }

    [Fact]
    public async Task BadArgumentsFailBeforeTheCheckpointIsRead()
    {
        var (code, output, err) = await Run("gym", "eval", "chess", "--checkpoint", Path.Combine(dir, "missing"), "--n", "2");
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Contains("unknown environment 'chess'", err);

        var (code2, _, err2) = await Run("gym", "eval", "arithmetic", "--checkpoint", dir, "--n", "0");
        Assert.Equal(1, code2);
        Assert.Contains("--n", err2);

        var (code3, _, err3) = await Run("gym", "eval", "arithmetic", "--checkpoint", Path.Combine(dir, "missing"), "--n", "1");
        Assert.Equal(1, code3);
        Assert.Contains("does not exist", err3);

        foreach (string[] limit in new[] { new[] { "--max-turns", "0" }, ["--episode-timeout", "0"], ["--step-timeout", "NaN"], ["--concurrency", "0"] })
        {
            var (code4, _, err4) = await Run(["gym", "eval", "arithmetic", "--checkpoint", Path.Combine(dir, "missing"), "--n", "1", .. limit]);
            Assert.Equal(1, code4);
            Assert.Contains("--step-timeout and --episode-timeout in (0, 86400] seconds", err4);   // before the missing checkpoint
        }
    }
}
