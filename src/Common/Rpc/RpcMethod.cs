using Google.Protobuf;

namespace K2RL.Common.Rpc;

/// <summary>
/// One method of a service: its full name (<c>/package.Service/Method</c>) and how to parse its
/// messages. Declare it once beside the service and use it on both sides:
/// <code>
/// static readonly RpcMethod&lt;ResetRequest, ResetReply&gt; Reset = RpcMethod.Create&lt;ResetRequest, ResetReply&gt;("k2rl.v1.Gym", "Reset");
/// server.AddUnary(Reset, async (req, ctx) =&gt; ...);
/// var reply = await client.UnaryAsync(Reset, new ResetRequest { ... });
/// </code>
/// </summary>
public sealed record RpcMethod<TRequest, TResponse>(
    string FullName, MessageParser<TRequest> RequestParser, MessageParser<TResponse> ResponseParser)
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    public string FullName { get; } = RpcMethod.CheckName(FullName);
}

public static class RpcMethod
{
    /// <summary>A method descriptor for generated messages: <paramref name="service"/> is the fully qualified service name ("k2rl.v1.Gym").</summary>
    public static RpcMethod<TRequest, TResponse> Create<TRequest, TResponse>(string service, string method)
        where TRequest : class, IMessage<TRequest>, new()
        where TResponse : class, IMessage<TResponse>, new()
    {
        return new RpcMethod<TRequest, TResponse>(
            $"/{service}/{method}", new MessageParser<TRequest>(() => new TRequest()), new MessageParser<TResponse>(() => new TResponse()));
    }

    /// <summary>Checks a full method name has the form <c>/Service/Method</c>.</summary>
    public static string CheckName(string fullName)
    {
        ArgumentNullException.ThrowIfNull(fullName);
        int second = fullName.Length > 1 ? fullName.IndexOf('/', 1) : -1;
        if (fullName.Length < 4 || fullName[0] != '/' || second < 2 || second == fullName.Length - 1
            || fullName.IndexOf('/', second + 1) >= 0)
        {
            throw new ArgumentException($"RPC method name '{fullName}' must have the form /package.Service/Method", nameof(fullName));
        }

        return fullName;
    }
}
