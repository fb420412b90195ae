namespace K2RL.Common.Rpc;

/// <summary>
/// A call that ended with a status other than OK. Handlers throw it to answer with a status; the client
/// throws it when a call fails, with the method and endpoint in the message.
/// </summary>
public sealed class RpcException : K2Exception
{
    public RpcException(StatusCode statusCode, string detail)
        : base($"{statusCode}: {detail}")
    {
        StatusCode = statusCode;
        Detail = detail;
    }

    public RpcException(StatusCode statusCode, string detail, string method, Uri endpoint)
        : base(ClientMessage(statusCode, detail, method, endpoint))
    {
        StatusCode = statusCode;
        Detail = detail;
        Method = method;
    }

    public RpcException(StatusCode statusCode, string detail, string method, Uri endpoint, Exception inner)
        : base(ClientMessage(statusCode, detail, method, endpoint), inner)
    {
        StatusCode = statusCode;
        Detail = detail;
        Method = method;
    }

    public StatusCode StatusCode { get; }

    /// <summary>The status message (<c>grpc-message</c>), decoded.</summary>
    public string Detail { get; }

    /// <summary>The full method name, on the client side.</summary>
    public string? Method { get; }

    private static string ClientMessage(StatusCode statusCode, string detail, string method, Uri endpoint) =>
        $"{statusCode}: {detail} (calling {method} at {endpoint})";
}
