using Google.Protobuf;
using K2RL.Common.Chat;
using Wire = K2RL.Protos.Gym;

namespace K2RL.Gym.Remote;

/// <summary>Conversions between the messages of <c>protos/k2rl/v1/gym.proto</c> and the Gym's types.</summary>
public static class GymProtocol
{
    public static Wire.Observation ToProto(Observation o)
    {
        var p = new Wire.Observation();
        foreach (var m in o.Messages)
        {
            p.Messages.Add(new Wire.ChatMessage { Role = (Wire.Role)(int)m.Role, Content = m.Content, ToolCallId = m.ToolCallId ?? "" });
        }

        foreach (var t in o.Tools)
        {
            p.Tools.Add(new Wire.ToolSpec { Name = t.Name, Description = t.Description, ParametersSchemaJson = t.ParametersSchemaJson });
        }

        return p;
    }

    public static Observation FromProto(Wire.Observation? p)
    {
        if (p is null)
        {
            return Observation.Empty;
        }

        var messages = p.Messages.Select(m => new Message(
            m.Role is >= Wire.Role.System and <= Wire.Role.Tool ? (Role)(int)m.Role : Role.User,
            m.Content, m.ToolCallId.Length == 0 ? null : m.ToolCallId)).ToList();
        var tools = p.Tools.Select(t => new ToolSpec(t.Name, t.Description,
            t.ParametersSchemaJson.Length == 0 ? "{}" : t.ParametersSchemaJson)).ToList();
        return new Observation(messages, tools);
    }

    public static Wire.StepReply ToProto(StepResult r)
    {
        var info = new Wire.StepInfo
        {
            Verdict = r.Info.Correct switch { true => Wire.Verdict.Correct, false => Wire.Verdict.Wrong, null => Wire.Verdict.None },
            Error = r.Info.Error ?? "",
        };
        foreach (var (k, v) in r.Info.Data)
        {
            info.Data[k] = v;
        }
        return new Wire.StepReply
        {
            Observation = ToProto(r.Observation),
            Reward = r.Reward,
            Terminated = r.Terminated,
            Truncated = r.Truncated,
            Info = info,
        };
    }

    public static StepResult FromProto(Wire.StepReply p) => new(
        FromProto(p.Observation), p.Reward, p.Terminated, p.Truncated,
        new StepInfo
        {
            Correct = p.Info?.Verdict switch { Wire.Verdict.Correct => true, Wire.Verdict.Wrong => false, _ => null },
            Error = string.IsNullOrEmpty(p.Info?.Error) ? null : p.Info.Error,
            Data = p.Info is null ? ResetOptions.EmptyMap : new Dictionary<string, string>(p.Info.Data),
        });

    public static ByteString Utf8(string s) => ByteString.CopyFromUtf8(s);
}
