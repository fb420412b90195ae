using System.Globalization;
using Microsoft.AspNetCore.Http;

namespace K2RL.Common.Rpc;

public sealed partial class RpcServer
{
    /// <summary>Deadlines longer than this are treated as none (a timer cannot hold them).</summary>
    private static readonly TimeSpan LongestDeadline = TimeSpan.FromDays(24);

    private async Task DispatchAsync(HttpContext http)
    {
        var request = http.Request;
        var response = http.Response;
        if (!HttpMethods.IsPost(request.Method))
        {
            response.StatusCode = StatusCodes.Status405MethodNotAllowed;
            response.Headers.Allow = "POST";
            WriteStatus(response, StatusCode.Internal, $"gRPC requires POST, got {request.Method}");
            return;
        }

        if (!GrpcWire.IsGrpcContentType(request.ContentType))
        {
            // The gRPC HTTP/2 spec: 415 so that no plain HTTP client mistakes the error for success.
            response.StatusCode = StatusCodes.Status415UnsupportedMediaType;
            WriteStatus(response, StatusCode.Internal, $"content-type '{request.ContentType}' is not application/grpc");
            return;
        }

        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = GrpcWire.ContentType;
        string method = request.Path.Value ?? "";
        if (!methods.TryGetValue(method, out var run))
        {
            WriteStatus(response, StatusCode.Unimplemented, $"unknown method {method}");
            return;
        }

        string encoding = request.Headers[GrpcWire.EncodingHeader].ToString();
        if (encoding.Length > 0 && encoding != GrpcWire.Identity)
        {
            response.Headers[GrpcWire.AcceptEncodingHeader] = GrpcWire.Identity;
            WriteStatus(response, StatusCode.Unimplemented, $"grpc-encoding '{encoding}' is not supported; send identity");
            return;
        }

        TimeSpan? timeout = null;
        string timeoutHeader = request.Headers[GrpcWire.TimeoutHeader].ToString();
        if (timeoutHeader.Length > 0)
        {
            if (!GrpcWire.TryParseTimeout(timeoutHeader, out var parsed))
            {
                WriteStatus(response, StatusCode.Internal, $"malformed grpc-timeout '{timeoutHeader}'");
                return;
            }

            timeout = parsed <= LongestDeadline ? parsed : null;
        }

        using var deadline = timeout is { } t ? new CancellationTokenSource(t) : null;
        using var callToken = CancellationTokenSource.CreateLinkedTokenSource(
            http.RequestAborted, stopping.Token, deadline?.Token ?? CancellationToken.None);
        var context = new ServerCallContext(
            method, DateTime.UtcNow + timeout, callToken.Token, RequestHeaders(request),
            $"{http.Connection.RemoteIpAddress}:{http.Connection.RemotePort}");
        var call = new ServerCall(http, context, Options);
        var (code, detail) = await RunAsync(call, run, deadline, http.RequestAborted).ConfigureAwait(false);
        call.Complete();
        WriteStatus(response, code, detail);
    }

    private async Task<(StatusCode Code, string? Detail)> RunAsync(
        ServerCall call, Func<ServerCall, Task> run, CancellationTokenSource? deadline, CancellationToken requestAborted)
    {
        try
        {
            await run(call).ConfigureAwait(false);
            return (StatusCode.OK, null);
        }
        catch (Exception) when (requestAborted.IsCancellationRequested)
        {
            return (StatusCode.Cancelled, "the client cancelled the call");
        }
        catch (Exception) when (deadline?.IsCancellationRequested == true)
        {
            return (StatusCode.DeadlineExceeded, "deadline exceeded");
        }
        catch (Exception) when (stopping.IsCancellationRequested)
        {
            return (StatusCode.Unavailable, "the server is shutting down");
        }
        catch (RpcException e)
        {
            Logger.Debug("RPC {Method} from {Peer} ended {Code}: {Detail}", call.Context.Method, call.Context.Peer, e.StatusCode, e.Detail);
            return (e.StatusCode, e.Detail);
        }
        catch (Exception e)
        {
            Logger.Error(e, "RPC handler {Method} failed", call.Context.Method);
            return (StatusCode.Unknown, $"handler threw {e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>The status goes in the headers of a trailers-only response when nothing was sent yet, else in the trailers.</summary>
    private static void WriteStatus(HttpResponse response, StatusCode code, string? detail)
    {
        string status = ((int)code).ToString(CultureInfo.InvariantCulture);
        if (!response.HasStarted)
        {
            response.Headers[GrpcWire.StatusHeader] = status;
            if (!string.IsNullOrEmpty(detail))
            {
                response.Headers[GrpcWire.MessageHeader] = GrpcWire.EncodeMessage(detail);
            }

            return;
        }

        response.AppendTrailer(GrpcWire.StatusHeader, status);
        if (!string.IsNullOrEmpty(detail))
        {
            response.AppendTrailer(GrpcWire.MessageHeader, GrpcWire.EncodeMessage(detail));
        }
    }

    private static Dictionary<string, string> RequestHeaders(HttpRequest request)
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, value) in request.Headers)
        {
            if (!name.StartsWith(':'))
            {
                headers[name.ToLowerInvariant()] = value.ToString();
            }
        }

        return headers;
    }
}
