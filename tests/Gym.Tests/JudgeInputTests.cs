using K2RL.Common;
using K2RL.Gym.Critic.Workbench;

namespace K2RL.Gym.Tests;

public class JudgeInputTests
{
    private static IReadOnlyList<JudgeInputItem> Read(params string[] lines) => JudgeInputReader.Read(lines, "in.jsonl");

    private static string Error(params string[] lines) => Assert.Throws<ConfigException>(() => Read(lines)).Message;

    [Fact]
    public void ReadsPromptsResponsesTagsRewardsAndIds()
    {
        var items = Read(
            """{"id": "q1", "prompt": "p", "responses": ["a", "b", "c"], "tags": ["math"], "rewards": [1, 0, 0.5]}""",
            "",
            """{"prompt": "p2", "responses": ["x", "y"], "id": 7}""",
            """{"prompt": "p3", "responses": ["x", "y"], "rewards": null}""");
        Assert.Equal(3, items.Count);
        Assert.Equal(("q1", 1, "p"), (items[0].Id, items[0].Line, items[0].Prompt));
        Assert.Equal(["a", "b", "c"], items[0].Responses);
        Assert.Equal(["math"], items[0].Tags);
        Assert.Equal([1.0, 0.0, 0.5], items[0].Rewards!);
        Assert.Equal(("7", 3), (items[1].Id, items[1].Line));   // the blank line 2 keeps the numbering
        Assert.Empty(items[1].Tags);
        Assert.Null(items[1].Rewards);
        Assert.Equal("line 4", items[2].Id);
    }

    [Theory]
    [InlineData("""{"prompt": "p", "responses": ["a", "b"]""", "in.jsonl:2: not JSON")]
    [InlineData("""["p", "a", "b"]""", "in.jsonl:2: expected a JSON object, got a list")]
    [InlineData("""{"prompt": "p", "responses": ["only one"]}""", "in.jsonl:2: 1 response(s); judging needs at least 2")]
    [InlineData("""{"prompt": "p", "responses": ["a", 42]}""", "in.jsonl:2: responses[1] must be text, got a number")]
    [InlineData("""{"prompt": "p", "responses": ["a", {"text": "b"}]}""", "in.jsonl:2: responses[1] must be text, got an object")]
    [InlineData("""{"prompt": "p", "responses": "a"}""", "in.jsonl:2: 'responses' must be a list of texts, got text")]
    [InlineData("""{"prompt": "p"}""", "in.jsonl:2: 'responses' is missing")]
    [InlineData("""{"responses": ["a", "b"]}""", "in.jsonl:2: 'prompt' must be text (missing)")]
    [InlineData("""{"prompt": 3, "responses": ["a", "b"]}""", "in.jsonl:2: 'prompt' must be text, got a number")]
    [InlineData("""{"prompt": "p", "responses": ["a", "b"], "reward": [1, 0]}""", "in.jsonl:2: unknown key 'reward'")]
    [InlineData("""{"prompt": "p", "responses": ["a", "b"], "rewards": [1]}""", "in.jsonl:2: 'rewards' must be a list of 2 numbers (one per response), got 1 values")]
    [InlineData("""{"prompt": "p", "responses": ["a", "b"], "rewards": [1, "0"]}""", "in.jsonl:2: rewards[1] must be a finite number, got text")]
    [InlineData("""{"prompt": "p", "responses": ["a", "b"], "rewards": [1, 1e999]}""", "in.jsonl:2: rewards[1] must be a finite number, got a number")]
    [InlineData("""{"prompt": "p", "responses": ["a", "b"], "tags": "math"}""", "in.jsonl:2: 'tags' must be a list of texts, got text")]
    [InlineData("""{"prompt": "p", "responses": ["a", "b"], "id": [1]}""", "in.jsonl:2: 'id' must be text or a number, got a list")]
    public void AMalformedLineIsAnErrorNamingTheLine(string bad, string expected)
    {
        string message = Error("""{"prompt": "fine", "responses": ["a", "b"]}""", bad);
        Assert.StartsWith(expected, message);
    }

    [Fact]
    public void AnEmptyFileOrAMissingOneSaysSo()
    {
        Assert.StartsWith("in.jsonl: no input lines", Error("", "  "));
        Assert.EndsWith("no such input file", Assert.Throws<ConfigException>(() => JudgeInputReader.ReadFile("/nonexistent/x.jsonl")).Message);
    }
}
