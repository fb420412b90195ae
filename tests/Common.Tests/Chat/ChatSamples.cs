using K2RL.Common.Chat;

namespace K2RL.Common.Tests.Chat;

/// <summary>A conversation with every role and a tool call, shared by the text tests here and Model.Tests' id tests.</summary>
internal static class ChatSamples
{
    public static readonly ToolSpec Lookup =
        new("lookup", "Looks up a key.", """{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}""");

    public static readonly Message[] Conversation =
    [
        Message.SystemText("You are helpful."),
        Message.UserText("Weather in Paris?"),
        new(Role.Assistant, "Let me check.", ToolCalls: [ToolCall.Create("get_weather", 0, """{"city": "Paris"}""")]),
        Message.ToolResult("functions.get_weather:0", """{"temp": 21}"""),
        Message.AssistantText("It is 21 degrees."),
    ];
}
