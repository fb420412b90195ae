using System.Text.Json;
using K2RL.Gym.Critic;
using K2RL.Model;
using K2RL.Tests.Shared;
using K2RL.Tests.Shared.Gym;

namespace K2RL.Cli.Tests;

/// <summary>
/// <c>k2rl gym judge</c> end to end: http judges served by a real local chat-completions server the test controls,
/// and a checkpoint judge on a randomly initialized tiny checkpoint.
/// </summary>
public sealed class GymJudgeCommandTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("k2rl-gymjudge-").FullName;
    private readonly ChatCompletionsServer server;
    private readonly string rubrics = Path.Combine(ExternalTools.RepoRoot(), "docs", "examples", "rubrics");
    private readonly string input;

    public GymJudgeCommandTests()
    {
        server = new ChatCompletionsServer(Answer);
        input = Write("input.jsonl",
            """{"id": "add", "prompt": "What is 38 + 4?", "responses": ["Answer: 42", "38 + 4 = 42\nAnswer: 42", "41"], "tags": ["arithmetic"], "rewards": [1, 1, 0]}""",
            """{"id": "chat", "prompt": "Say hello.", "responses": ["Hello!", "Hi"]}""");
    }

    /// <summary>/longer prefers the longer response, /first always answers A, /broken fails, /keyed wants the key.</summary>
    private static ChatReply Answer(ChatRequest r)
    {
        var (a, b) = CriticProtocol.ResponsesOf(r.Prompt);
        string longer = a.Length == b.Length ? "Verdict: [[TIE]]" : a.Length > b.Length ? "Longer.\nVerdict: [[A]]" : "Longer.\nVerdict: [[B]]";
        return r.Path.Split('/')[1] switch
        {
            "longer" => ChatReply.Content(longer),
            "first" => ChatReply.Content("Verdict: [[A]]"),
            "broken" => new ChatReply(500, "oops"),
            "keyed" when r.Authorization == "Bearer " + Environment.GetEnvironmentVariable(KeyVariable) => ChatReply.Content(longer),
            _ => new ChatReply(401, "{\"error\": \"no key\"}"),
        };
    }

    private static readonly string KeyVariable = "K2RL_TEST_GYM_JUDGE_KEY_" + Guid.NewGuid().ToString("N");

    private string Write(string name, params string[] lines)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllLines(path, lines);
        return path;
    }

    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => ModelCommandInfoTests.Run(args);

    private string[] Judge(params string[] more) => ["gym", "judge", "--rubrics", rubrics, "--input", input, .. more];

    [Fact]
    public async Task TwoHttpJudgesGiveOneJsonObjectWithTheirAgreementAndAReport()
    {
        string report = Path.Combine(dir, "out", "report.html");
        var (code, stdout, stderr) = await Run(Judge("--judge", server.Endpoint("longer").ToString(), "--judge", server.Endpoint("first").ToString(),
            "--model", "m-longer", "--model", "m-first", "--both-orders", "--json", "--report", report));
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);   // all of stdout is one object
        var root = doc.RootElement;
        Assert.Equal([server.Endpoint("longer").ToString(), server.Endpoint("first").ToString()],
            root.GetProperty("judges").EnumerateArray().Select(j => j.GetProperty("judge").GetString()));

        // "add": 3 pairs x 2 orders, "chat": 1 x 2 = 8 comparisons. "longer" answers A when the longer one is first
        // (4 times), else B (4); "first" always A: 4 of 8 equal, kappa 0 (p_o = p_e = 0.5).
        var agreement = root.GetProperty("agreement");
        Assert.Equal((8, 4), (agreement.GetProperty("compared").GetInt32(), agreement.GetProperty("equal").GetInt32()));
        Assert.Equal(0.0, agreement.GetProperty("kappa").GetDouble(), 12);
        var longer = root.GetProperty("judges")[0];
        Assert.Equal((4, 4), (longer.GetProperty("position_bias").GetProperty("pairs").GetInt32(), longer.GetProperty("position_bias").GetProperty("consistent").GetInt32()));
        // "add" rewards [1, 1, 0]: the verifier decides (1, 3) and (2, 3) in both orders, and #3 is the shortest: 4 of 4
        var accuracy = longer.GetProperty("critic_accuracy");
        Assert.Equal((4, 4), (accuracy.GetProperty("pairs").GetInt32(), accuracy.GetProperty("agreed").GetInt32()));
        var add = root.GetProperty("prompts")[0];
        Assert.Equal(["correct_and_checked", "no_initial_praise", "names_the_operation"], add.GetProperty("rubrics").EnumerateArray().Select(r => r.GetString()));
        Assert.Equal([0.5, 1.0, 0.0], add.GetProperty("judges")[0].GetProperty("win_rate").EnumerateArray().Select(x => x.GetDouble()));
        Assert.Equal("Longer.\nVerdict: [[B]]", add.GetProperty("judges")[0].GetProperty("comparisons")[0].GetProperty("text").GetString());

        Assert.All(server.Requests, r => Assert.Equal(r.Path.StartsWith("/longer/", StringComparison.Ordinal) ? "m-longer" : "m-first", r.Model));
        Assert.Equal(16, server.Requests.Count);
        string html = File.ReadAllText(report);
        Assert.Contains("<h1>Rubric workbench</h1>", html);
        Assert.Contains("Agreement between the judges: 4 of 8 comparisons equal (50 %)", html);
        Assert.Contains($"report: {report}", stderr);
    }

    [Fact]
    public async Task BriefRubricDetailSendsNamesAndDescriptionsWithoutTheCriteria()
    {
        var criteria = RubricLoader.LoadDirectory(rubrics).SelectMany(r => r.Criteria).Select(c => c.Trim()).ToList();
        Assert.NotEmpty(criteria);
        var (code, _, err) = await Run(Judge("--judge", server.Endpoint("longer").ToString(), "--json"));
        Assert.True(code == 0, err);
        var full = server.Requests.Select(r => r.Prompt).ToList();
        (code, _, err) = await Run(Judge("--judge", server.Endpoint("longer").ToString(), "--json", "--rubric-detail", "brief"));
        Assert.True(code == 0, err);
        var brief = server.Requests.Select(r => r.Prompt).Skip(full.Count).ToList();
        Assert.Equal(full.Count, brief.Count);
        Assert.All(full, p => Assert.Contains(criteria, c => p.Contains(c, StringComparison.Ordinal)));
        Assert.All(brief, p => Assert.DoesNotContain(criteria, c => p.Contains(c, StringComparison.Ordinal)));
        Assert.True(brief.Sum(p => p.Length) < full.Sum(p => p.Length));   // requests run concurrently: compare totals, not pairs

        (code, _, err) = await Run(Judge("--judge", server.Endpoint("longer").ToString(), "--rubric-detail", "short"));
        Assert.NotEqual(0, code);
        Assert.Contains("short", err);
    }

    [Fact]
    public async Task TheKeyIsSentButNeverPrinted()
    {
        string key = "sk-" + Guid.NewGuid().ToString("N");
        Environment.SetEnvironmentVariable(KeyVariable, key);
        try
        {
            string report = Path.Combine(dir, "keyed.html");
            var (code, stdout, stderr) = await Run(Judge("--judge", server.Endpoint("keyed").ToString(), "--api-key-env", KeyVariable,
                "--report", report, "--verbose"));
            Assert.True(code == 0, stderr);
            Assert.Contains("unparseable 0 of 3", stdout);   // every request carried the key
            Assert.All(server.Requests, r => Assert.Equal("Bearer " + key, r.Authorization));
            Assert.DoesNotContain(key, stdout + stderr + File.ReadAllText(report));
        }
        finally
        {
            Environment.SetEnvironmentVariable(KeyVariable, null);
        }
    }

    [Fact]
    public async Task AFailingEndpointGivesUnparseableVerdictsWithTheReasonNotACrash()
    {
        var (code, stdout, stderr) = await Run(Judge("--judge", server.Endpoint("broken").ToString(), "--retries", "1", "--json"));
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var judge = doc.RootElement.GetProperty("judges")[0];
        Assert.Equal((4, 4), (judge.GetProperty("comparisons").GetInt32(), judge.GetProperty("unparseable").GetInt32()));
        string expected = $"HTTP 500 from {server.Endpoint("broken")} (2 attempts)";
        Assert.Equal(expected, judge.GetProperty("last_failure").GetString());
        Assert.All(doc.RootElement.GetProperty("prompts").EnumerateArray().SelectMany(p => p.GetProperty("judges")[0].GetProperty("comparisons").EnumerateArray()),
            c => Assert.Equal((expected, "unparseable"), (c.GetProperty("problem").GetString(), c.GetProperty("verdict").GetString())));
        Assert.Equal(0, doc.RootElement.GetProperty("judges")[0].GetProperty("critic_accuracy").GetProperty("agreed").GetInt32());
    }

    [Fact]
    public async Task ACheckpointJudgeAndAnHttpJudgeAreCompared()
    {
        using var checkpoint = new RandomCheckpoint(
            ModelConfig.Load(ModelCommandInfoTests.Preset("k2-test")) with { VocabSize = 272, MaxPositionEmbeddings = 4096 },
            seed: 5, prefix: "k2rl-gymjudge-ckpt-");
        var (code, stdout, stderr) = await Run(Judge("--judge", "checkpoint:" + checkpoint.Dir, "--judge", server.Endpoint("longer").ToString(),
            "--max-tokens", "4", "--json"));
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var judges = doc.RootElement.GetProperty("judges");
        Assert.Equal("checkpoint:" + checkpoint.Dir, judges[0].GetProperty("judge").GetString());
        Assert.Equal(4, judges[0].GetProperty("comparisons").GetInt32());
        // the random model writes 4 tokens of something for each comparison: its text is reported with the verdict
        Assert.All(doc.RootElement.GetProperty("prompts").EnumerateArray().SelectMany(p => p.GetProperty("judges")[0].GetProperty("comparisons").EnumerateArray()),
            c => Assert.Equal(JsonValueKind.String, c.GetProperty("text").ValueKind));
        var agreement = doc.RootElement.GetProperty("agreement");
        Assert.Equal(4, agreement.GetProperty("compared").GetInt32() + agreement.GetProperty("excluded").GetInt32());
    }

    [Fact]
    public async Task TextOutputShowsVerdictsScoresAndTheOverallLines()
    {
        var (code, stdout, stderr) = await Run(Judge("--judge", server.Endpoint("longer").ToString()));
        Assert.True(code == 0, stderr);
        Assert.Contains("== add (line 1): 3 responses; tags [arithmetic]; rubrics correct_and_checked, no_initial_praise*, names_the_operation", stdout);
        Assert.Contains("    #1 (A) vs #2 (B): #2 wins | Longer. Verdict: [[B]]", stdout);
        Assert.Contains("    #2: win rate 1  bradley-terry", stdout);
        Assert.Contains("position bias: not measured", stdout);
        Assert.Contains("critic accuracy against the verifier rewards: 2 of 2 pairs (100 %)", stdout);
    }

    [Fact]
    public async Task AMalformedInputLineIsAnErrorNamingTheLine()
    {
        string bad = Write("bad.jsonl", """{"prompt": "p", "responses": ["a", "b"]}""", """{"prompt": "p", "responses": ["a", 7]}""");
        var (code, stdout, stderr) = await Run("gym", "judge", "--rubrics", rubrics, "--input", bad, "--judge", server.Endpoint("longer").ToString(), "--json");
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains($"error: {bad}:2: responses[1] must be text, got a number", stderr);
        Assert.Empty(server.Requests);
    }

    [Fact]
    public async Task ARubricDirectoryWithNothingForTheTagsSaysSo()
    {
        string only = Directory.CreateDirectory(Path.Combine(dir, "rubrics")).FullName;
        File.WriteAllText(Path.Combine(only, "code.yaml"), "kind: task_specific\nrubrics:\n  - name: tests_pass\n    description: d\n    applies_to: [code]\n");
        var (code, _, stderr) = await Run("gym", "judge", "--rubrics", only, "--input", input, "--judge", server.Endpoint("longer").ToString());
        Assert.Equal(1, code);
        Assert.Contains($"error: line 1 (add): no rubric in {only} applies to tags [arithmetic] (its rubrics are task-specific and apply to the tags: code)", stderr);
        var (withTag, _, stderr2) = await Run("gym", "judge", "--rubrics", only, "--input", input, "--judge", server.Endpoint("longer").ToString(), "--tags", "code");
        Assert.True(withTag == 0, stderr2);
    }

    [Theory]
    [InlineData("ftp://host/x", "--judge 'ftp://host/x': expected checkpoint:DIR or an http(s):// chat-completions URL")]
    [InlineData("checkpoint:", "--judge 'checkpoint:': expected checkpoint:DIR")]
    public async Task ABadJudgeIsAnError(string spec, string message)
    {
        var (code, _, stderr) = await Run(Judge("--judge", spec));
        Assert.Equal(1, code);
        Assert.Contains(message, stderr);
    }

    [Fact]
    public async Task ThreeJudgesOrAnUnsetKeyVariableAreErrors()
    {
        string url = server.Endpoint("longer").ToString();
        var (code, _, stderr) = await Run(Judge("--judge", url, "--judge", url, "--judge", url));
        Assert.Equal(1, code);
        Assert.Contains("--judge must be given once or twice (got 3)", stderr);
        (code, _, stderr) = await Run(Judge("--judge", url, "--api-key-env", "K2RL_TEST_SURELY_UNSET_VARIABLE"));
        Assert.Equal(1, code);
        Assert.Contains("the API key variable 'K2RL_TEST_SURELY_UNSET_VARIABLE' is not set", stderr);
    }

    public void Dispose()
    {
        server.Dispose();
        Directory.Delete(dir, recursive: true);
    }
}
