using Google.Protobuf;
using K2RL.Common.Chat;
using K2RL.Common.Rpc;
using Pb = K2RL.Protos.Gym;

namespace K2RL.Gym.Remote;

/// <summary>The methods of <c>protos/k2rl/v1/gym.proto</c> and conversions between its messages and the Gym's types.</summary>
public static class GymProtocol
{
    // One method table per proto service, deliberately alike: RolloutRpc is k2rl.v1.Rollout's.
    public const string Service = "k2rl.v1.Gym";

    public static readonly RpcMethod<Pb.ResetRequest, Pb.ResetReply> Reset = RpcMethod.Create<Pb.ResetRequest, Pb.ResetReply>(Service, "Reset");

    public static readonly RpcMethod<Pb.StepRequest, Pb.StepReply> Step = RpcMethod.Create<Pb.StepRequest, Pb.StepReply>(Service, "Step");

    public static readonly RpcMethod<Pb.CloseRequest, Pb.CloseReply> Close = RpcMethod.Create<Pb.CloseRequest, Pb.CloseReply>(Service, "Close");

    public static readonly RpcMethod<Pb.SnapshotRequest, Pb.SnapshotReply> Snapshot = RpcMethod.Create<Pb.SnapshotRequest, Pb.SnapshotReply>(Service, "Snapshot");

    public static readonly RpcMethod<Pb.RestoreRequest, Pb.RestoreReply> Restore = RpcMethod.Create<Pb.RestoreRequest, Pb.RestoreReply>(Service, "Restore");

    public static Pb.Observation ToProto(Observation o)
    {
        var p = new Pb.Observation();
        foreach (var m in o.Messages)
        {
            p.Messages.Add(new Pb.ChatMessage { Role = (Pb.Role)(int)m.Role, Content = m.Content, ToolCallId = m.ToolCallId ?? "" });
        }

        foreach (var t in o.Tools)
        {
            p.Tools.Add(new Pb.ToolSpec { Name = t.Name, Description = t.Description, ParametersSchemaJson = t.ParametersSchemaJson });
        }

        return p;
    }

    public static Observation FromProto(Pb.Observation? p)
    {
        if (p is null)
        {
            return Observation.Empty;
        }

        var messages = p.Messages.Select(m => new Message(
            m.Role is >= Pb.Role.System and <= Pb.Role.Tool ? (Role)(int)m.Role : Role.User,
            m.Content, m.ToolCallId.Length == 0 ? null : m.ToolCallId)).ToList();
        var tools = p.Tools.Select(t => new ToolSpec(t.Name, t.Description,
            t.ParametersSchemaJson.Length == 0 ? "{}" : t.ParametersSchemaJson)).ToList();
        return new Observation(messages, tools);
    }

    public static Pb.StepReply ToProto(StepResult r)
    {
        var info = new Pb.StepInfo
        {
            Verdict = r.Info.Correct switch { true => Pb.Verdict.Correct, false => Pb.Verdict.Wrong, null => Pb.Verdict.None },
            Error = r.Info.Error ?? "",
        };
        foreach (var (k, v) in r.Info.Data)
        {
            info.Data[k] = v;
        }
        return new Pb.StepReply
        {
            Observation = ToProto(r.Observation),
            Reward = r.Reward,
            Terminated = r.Terminated,
            Truncated = r.Truncated,
            Info = info,
        };
    }

    public static StepResult FromProto(Pb.StepReply p) => new(
        FromProto(p.Observation), p.Reward, p.Terminated, p.Truncated,
        new StepInfo
        {
            Correct = p.Info?.Verdict switch { Pb.Verdict.Correct => true, Pb.Verdict.Wrong => false, _ => null },
            Error = string.IsNullOrEmpty(p.Info?.Error) ? null : p.Info.Error,
            Data = p.Info is null ? ResetOptions.EmptyMap : new Dictionary<string, string>(p.Info.Data),
        });

    public static ByteString Utf8(string s) => ByteString.CopyFromUtf8(s);
}
