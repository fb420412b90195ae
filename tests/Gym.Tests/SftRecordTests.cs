using K2RL.Common;
using K2RL.Common.Chat;
using K2RL.Gym.Synthesis;

namespace K2RL.Gym.Tests;

public class SftRecordTests
{
    private static readonly ToolSpec Lookup = new("lookup", "Look a key up", """{"type":"object","properties":{"key":{"type":"string"}}}""");

    private static SftRecord ToolRecord() => new()
    {
        Id = "r1",
        Env = "tool_use",
        Difficulty = 2,
        Tools = [Lookup],
        Messages =
        [
            Message.SystemText("You can call tools."),
            Message.UserText("Price of 2 zorbel?"),
            new Message(Role.Assistant, "Looking it up.", ToolCalls: [ToolCall.Create("lookup", 0, """{"key":"zorbel"}""")]),
            Message.ToolResult("functions.lookup:0", "1.5"),
            Message.AssistantText("Answer: 3"),
        ],
        RubricJson = """{"success":"answer 3"}""",
        Verdict = new SftVerdict(true, "verifier", "answer matches"),
        ProvenanceJson = """{"generator":"expert","seed":7}""",
    };

    [Fact]
    public void RoundTripsThroughOneLine()
    {
        var record = ToolRecord();
        string line = record.ToJsonLine();
        Assert.DoesNotContain('\n', line);
        Assert.True(SftRecord.TryParse(line, out var back, out string? error), error);
        Assert.Equal(line, back!.ToJsonLine());
        Assert.Equal(ChatFormat.Render(record.Messages, record.Tools), ChatFormat.Render(back.Messages, back.Tools));
        Assert.Equal("functions.lookup:0", back.Messages[2].ToolCalls![0].Id);
        Assert.Equal(new SftVerdict(true, "verifier", "answer matches"), back.Verdict);
    }

    [Theory]
    [InlineData("not json", "not valid JSON")]
    [InlineData("[]", "expected Object")]
    [InlineData("""{"messages":[]}""", "missing key 'id'")]
    [InlineData("""{"id":"x"}""", "missing key 'messages'")]
    [InlineData("""{"id":"x","mesages":[]}""", "unknown key 'mesages'")]
    [InlineData("""{"id":"x","messages":[{"role":"user","content":"q"}]}""", "1 message(s)")]
    [InlineData("""{"id":"x","messages":[{"role":"assistant","content":"a"},{"role":"assistant","content":"a"}]}""", "starts with a system or user")]
    [InlineData("""{"id":"x","messages":[{"role":"user","content":"q"},{"role":"user","content":"a"}]}""", "ends with an assistant")]
    [InlineData("""{"id":"x","messages":[{"role":"robot","content":"q"},{"role":"assistant","content":"a"}]}""", "'robot' is not")]
    [InlineData("""{"id":"x","messages":[{"role":"user","content":5},{"role":"assistant","content":"a"}]}""", "messages[0].content is Number")]
    [InlineData("""{"id":"x","messages":[{"role":"user","content":"q<|im_end|>"},{"role":"assistant","content":"a"}]}""", "special token <|im_end|>")]
    [InlineData("""{"id":"x","messages":[{"role":"user","content":"q"},{"role":"tool","tool_call_id":"functions.f:0","content":"r"},{"role":"assistant","content":"a"}]}""", "which no earlier assistant message called")]
    [InlineData("""{"id":"x","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"","tool_calls":[{"name":"f","index":0,"arguments":"x"}]},{"role":"assistant","content":"a"}]}""", "arguments is String")]
    [InlineData("""{"id":"x","tools":[{"name":"g","parameters":{}}],"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"","tool_calls":[{"name":"f","index":0,"arguments":{}}]},{"role":"assistant","content":"a"}]}""", "does not declare")]
    [InlineData("""{"id":"x","difficulty":1.5,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}""", "difficulty is not an integer")]
    [InlineData("""{"id":"x","verdict":{"kept":"yes"},"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}""", "verdict.kept")]
    public void RefusesWhatSftCannotUse(string line, string expected)
    {
        Assert.False(SftRecord.TryParse(line, out var record, out string? error));
        Assert.Null(record);
        Assert.Contains(expected, error);
    }

    [Fact]
    public void ADatasetErrorNamesFileAndLine()
    {
        string dir = Directory.CreateTempSubdirectory("k2rl-sft-").FullName;
        try
        {
            string good = ToolRecord().ToJsonLine();
            File.WriteAllLines(Path.Combine(dir, "a.jsonl"), [good, "", good]);
            Assert.Equal(2, SftDataset.Read(dir).Count);
            File.WriteAllLines(Path.Combine(dir, "b.jsonl"), [good, good, """{"id":"y","messages":[]}"""]);
            var e = Assert.Throws<CorruptFileException>(() => SftDataset.Read(dir));
            Assert.Contains("b.jsonl:3", e.Message);
            Assert.Contains("0 message(s)", e.Message);
            Assert.Throws<ConfigException>(() => SftDataset.Read(Path.Combine(dir, "missing.jsonl")));
            // a synth output directory: rejected.jsonl is not read; a rejected record anywhere else is an error
            File.Delete(Path.Combine(dir, "b.jsonl"));
            string rejected = (ToolRecord() with { Verdict = new SftVerdict(false, "verifier", "wrong answer") }).ToJsonLine();
            File.WriteAllLines(Path.Combine(dir, "rejected.jsonl"), [rejected]);
            Assert.Equal(2, SftDataset.Read(dir).Count);
            File.WriteAllLines(Path.Combine(dir, "c.jsonl"), [good, rejected]);
            var r = Assert.Throws<CorruptFileException>(() => SftDataset.Read(dir));
            Assert.Contains("c.jsonl:2", r.Message);
            Assert.Contains("rejected by its judge (verifier: wrong answer)", r.Message);
            string empty = Directory.CreateDirectory(Path.Combine(dir, "empty")).FullName;
            Assert.Contains("no .jsonl", Assert.Throws<ConfigException>(() => SftDataset.Read(empty)).Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
