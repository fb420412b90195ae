using K2RL.Gym;

namespace K2RL.Gym.Tests;

public class ChatFormatTests
{
    private const string Example =
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.calculator:0<|tool_call_argument_begin|>{\"expression\": \"2+3\"}<|tool_call_end|><|tool_calls_section_end|>";

    [Fact]
    public void ParsesTheKimiStyleExample()
    {
        Assert.True(ToolCallParser.TryParse("Let me compute." + Example, out string content, out var calls, out string? error), error);
        Assert.Equal("Let me compute.", content);
        var call = Assert.Single(calls);
        Assert.Equal("calculator", call.Name);
        Assert.Equal(0, call.Index);
        Assert.Equal("functions.calculator:0", call.Id);
        Assert.Equal("{\"expression\": \"2+3\"}", call.ArgumentsJson);
    }

    [Fact]
    public void FormatThenParseRoundTripsSeveralCalls()
    {
        var calls = new[]
        {
            new ToolCall("functions.lookup:0", "lookup", 0, "{\"key\":\"zorbel\"}"),
            new ToolCall("functions.calculator:1", "calculator", 1, "{\"expression\":\"3*4\"}"),
        };
        string text = ChatFormat.FormatToolCalls(calls);
        Assert.True(ToolCallParser.TryParse(text, out _, out var parsed, out _));
        Assert.Equal(calls, parsed);
    }

    [Fact]
    public void TextWithoutToolCallsHasNone()
    {
        Assert.True(ToolCallParser.TryParse("Answer: 5", out string content, out var calls, out _));
        Assert.Equal("Answer: 5", content);
        Assert.Empty(calls);
    }

    [Theory]
    [InlineData("<|tool_calls_section_begin|><|tool_call_begin|>functions.calculator:0<|tool_call_argument_begin|>{}", "not closed")]
    [InlineData("<|tool_calls_section_begin|><|tool_call_begin|>functions.calculator:0<|tool_call_argument_begin|>{}<|tool_call_end|>", "not closed")]
    [InlineData("<|tool_calls_section_begin|><|tool_call_begin|>calculator<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>", "not functions.NAME:INDEX")]
    [InlineData("<|tool_calls_section_begin|><|tool_call_begin|>functions.calc:x<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>", "not functions.NAME:INDEX")]
    [InlineData("<|tool_calls_section_begin|><|tool_call_begin|>functions.calc:0<|tool_call_argument_begin|>{\"a\": <|tool_call_end|><|tool_calls_section_end|>", "not a JSON object")]
    [InlineData("<|tool_calls_section_begin|><|tool_call_begin|>functions.calc:0<|tool_call_argument_begin|>[1,2]<|tool_call_end|><|tool_calls_section_end|>", "not a JSON object")]
    [InlineData("<|tool_calls_section_begin|><|tool_call_begin|>functions.calc:0{}<|tool_call_end|><|tool_calls_section_end|>", "no <|tool_call_argument_begin|>")]
    [InlineData("<|tool_calls_section_begin|><|tool_calls_section_end|>", "empty")]
    [InlineData("<|tool_calls_section_begin|>junk<|tool_call_begin|>functions.c:0<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>", "unexpected text")]
    [InlineData("<|tool_call_begin|>functions.c:0<|tool_call_argument_begin|>{}<|tool_call_end|>", "outside")]
    [InlineData(Example + "more words", "after the tool-call section")]
    public void MalformedSectionsSayWhatIsWrong(string action, string expected)
    {
        Assert.False(ToolCallParser.TryParse(action, out _, out var calls, out string? error));
        Assert.Empty(calls);
        Assert.Contains(expected, error);
    }

    [Fact]
    public void RendersMessagesWithSpecialTokens()
    {
        string text = ChatFormat.Render(
            [Message.SystemText("sys"), Message.UserText("hi"), Message.AssistantText("yo"), Message.ToolResult("functions.lookup:0", "4")],
            [BuiltinTools.LookupSpec]);
        Assert.StartsWith("<|im_system|>tool_declare<|im_middle|>[{\"type\":\"function\"", text);
        Assert.Contains("<|im_system|>system<|im_middle|>sys<|im_end|>", text);
        Assert.Contains("<|im_user|>user<|im_middle|>hi<|im_end|>", text);
        Assert.Contains("<|im_assistant|>assistant<|im_middle|>yo<|im_end|>", text);
        Assert.EndsWith("<|im_system|>tool<|im_middle|>## Return of functions.lookup:0\n4<|im_end|>", text);
    }
}
