using K2RL.Common.Chat;

namespace K2RL.Common.Tests.Chat;

public class ChatFormatTests
{
    private const string Example =
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.calculator:0<|tool_call_argument_begin|>{\"expression\": \"2+3\"}<|tool_call_end|><|tool_calls_section_end|>";

    [Fact]
    public void ParsesTheKimiStyleExample()
    {
        Assert.True(ChatFormat.TryParseToolCalls("Let me compute." + Example, out string content, out var calls, out string? error), error);
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
            ToolCall.Create("lookup", 0, "{\"key\":\"zorbel\"}"),
            ToolCall.Create("calculator", 1, "{\"expression\":\"3*4\"}"),
        };
        string text = ChatFormat.FormatToolCalls(calls);
        Assert.True(ChatFormat.TryParseToolCalls(text, out _, out var parsed, out _));
        Assert.Equal(calls, parsed);
    }

    [Fact]
    public void TextWithoutToolCallsHasNone()
    {
        Assert.True(ChatFormat.TryParseToolCalls("Answer: 5", out string content, out var calls, out _));
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
        Assert.False(ChatFormat.TryParseToolCalls(action, out _, out var calls, out string? error));
        Assert.Empty(calls);
        Assert.Contains(expected, error);
    }

    [Fact]
    public void RendersMessagesWithSpecialTokens()
    {
        string text = ChatFormat.Render(
            [Message.SystemText("sys"), Message.UserText("hi"), Message.AssistantText("yo"), Message.ToolResult("functions.lookup:0", "4")],
            [ChatSamples.Lookup]);
        Assert.StartsWith("<|im_system|>tool_declare<|im_middle|>[{\"type\":\"function\"", text);
        Assert.Contains("<|im_system|>system<|im_middle|>sys<|im_end|>", text);
        Assert.Contains("<|im_user|>user<|im_middle|>hi<|im_end|>", text);
        Assert.Contains("<|im_assistant|>assistant<|im_middle|>yo<|im_end|>", text);
        Assert.EndsWith("<|im_system|>tool<|im_middle|>## Return of functions.lookup:0\n4<|im_end|>", text);
    }

    [Fact]
    public void RendersKimiK2Layout()
    {
        string expected =
            "<|im_system|>system<|im_middle|>You are helpful.<|im_end|>" +
            "<|im_user|>user<|im_middle|>Weather in Paris?<|im_end|>" +
            "<|im_assistant|>assistant<|im_middle|>Let me check.<|tool_calls_section_begin|>" +
            "<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|>" +
            "<|tool_calls_section_end|><|im_end|>" +
            "<|im_system|>tool<|im_middle|>## Return of functions.get_weather:0\n{\"temp\": 21}<|im_end|>" +
            "<|im_assistant|>assistant<|im_middle|>It is 21 degrees.<|im_end|>" +
            "<|im_assistant|>assistant<|im_middle|>";
        Assert.Equal(expected, ChatFormat.Render(ChatSamples.Conversation, addGenerationPrompt: true));
    }

    [Fact]
    public void SegmentsAlternateSpecialsWithJoinedTextRuns()
    {
        var segments = ChatFormat.Segments([Message.ToolResult("functions.f:0", "4")]);
        Assert.Equal(
            [
                new(true, ChatTokens.ImSystem), new(false, "tool"), new(true, ChatTokens.ImMiddle),
                new(false, "## Return of functions.f:0\n4"), new(true, ChatTokens.ImEnd),
            ],
            segments);
        Assert.All(segments.Where(s => s.Special), s => Assert.Contains(s.Text, ChatTokens.All));
    }

    [Fact]
    public void AnActionWithCallsRendersLikeAMessageWithToolCalls()
    {
        var calls = new[] { ToolCall.Create("lookup", 0, "{\"key\":\"a\"}"), ToolCall.Create("lookup", 1, "{\"key\":\"b\"}") };
        string asText = ChatFormat.Render([Message.AssistantText("Two lookups." + ChatFormat.FormatToolCalls(calls))]);
        Assert.Equal(asText, ChatFormat.Render([new Message(Role.Assistant, "Two lookups.", ToolCalls: calls)]));
        Assert.Equal(ChatFormat.AssistantPrefix + "Two lookups." + ChatFormat.FormatToolCalls(calls) + ChatTokens.ImEnd, asText);
    }

    [Fact]
    public void RenderThenParseRoundTripsMessagesToolCallsAndDeclarations()
    {
        Message[] messages =
        [
            .. ChatSamples.Conversation,
            Message.UserText("And Rome and Oslo?\nBoth, please."),
            new(Role.Assistant, "", ToolCalls:
            [
                ToolCall.Create("get_weather", 1, """{"city": "Rome"}"""),
                ToolCall.Create("get_weather", 2, """{"city": "Oslo"}"""),
            ]),
            Message.ToolResult("functions.get_weather:1", """{"temp": 25}"""),
            Message.ToolResult("functions.get_weather:2", "error: no station\nretry later"),
            Message.AssistantText("Rome 25; Oslo unknown."),
        ];
        string text = ChatFormat.Render(messages, [ChatSamples.Lookup]);

        Assert.True(ChatFormat.TryParse(text, out var parsed, out var tools, out string? error), error);
        Assert.Equal([ChatSamples.Lookup], tools);
        Assert.Equal(messages.Length, parsed.Count);
        for (int i = 0; i < messages.Length; i++)
        {
            Assert.Equal(messages[i] with { ToolCalls = null }, parsed[i] with { ToolCalls = null });
            Assert.Equal(messages[i].ToolCalls ?? [], parsed[i].ToolCalls ?? []);
        }

        Assert.Equal(text, ChatFormat.Render(parsed, tools));
    }

    [Theory]
    [InlineData("<|im_user|>user<|im_middle|>hi", "is not HEADER")]
    [InlineData("hello", "is not HEADER")]
    [InlineData("<|im_user|>robot<|im_middle|>hi<|im_end|>", "is not a system, user, assistant, tool")]
    [InlineData("<|im_system|>tool<|im_middle|>no header<|im_end|>", "is not a system, user, assistant, tool")]
    [InlineData("<|im_assistant|>assistant<|im_middle|>x<|tool_calls_section_begin|><|tool_calls_section_end|><|im_end|>", "empty")]
    [InlineData("<|im_system|>tool_declare<|im_middle|>{}<|im_end|>", "tool declarations")]
    public void MalformedConversationsSayWhatIsWrong(string text, string expected)
    {
        Assert.False(ChatFormat.TryParse(text, out _, out _, out string? error));
        Assert.Contains(expected, error);
    }
}
