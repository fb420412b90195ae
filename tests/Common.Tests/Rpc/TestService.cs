using System.Collections.Concurrent;
using Google.Protobuf;
using K2RL.Common.Rpc;
using K2RL.Common.Tests.Rpc.Proto;

namespace K2RL.Common.Tests.Rpc;

/// <summary>The test service's methods, declared once for server and client.</summary>
public static class TestRpc
{
    public const string Service = "k2rl.test.v1.TestService";

    public static readonly RpcMethod<EchoRequest, EchoReply> Echo = RpcMethod.Create<EchoRequest, EchoReply>(Service, "Echo");
    public static readonly RpcMethod<CountRequest, CountReply> Count = RpcMethod.Create<CountRequest, CountReply>(Service, "Count");
    public static readonly RpcMethod<SumRequest, SumReply> Sum = RpcMethod.Create<SumRequest, SumReply>(Service, "Sum");
    public static readonly RpcMethod<EchoRequest, EchoReply> Chat = RpcMethod.Create<EchoRequest, EchoReply>(Service, "Chat");
}

/// <summary>
/// The test service in C#, with the same behaviour as tests/interop/server.js. It records which calls saw
/// their cancellation token fire, by tag (Echo: the text; Count: the tag).
/// </summary>
public sealed class TestService : IRpcService
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource> signals = new();

    /// <summary>Completes when the handler of the call tagged <paramref name="tag"/> has begun its delay.</summary>
    public Task DelayStarted(string tag) => Signal("started:" + tag).Task;

    /// <summary>Completes when the handler of the call tagged <paramref name="tag"/> has seen its token fire.</summary>
    public Task CancellationSeen(string tag) => Signal("cancelled:" + tag).Task;

    public void Register(RpcServer server)
    {
        server.AddUnary(TestRpc.Echo, EchoAsync)
            .AddServerStreaming(TestRpc.Count, CountAsync)
            .AddClientStreaming(TestRpc.Sum, SumAsync)
            .AddDuplex(TestRpc.Chat, ChatAsync);
    }

    private async Task<EchoReply> EchoAsync(EchoRequest request, ServerCallContext context)
    {
        using var watch = WatchCancellation(request.Text, context.CancellationToken);
        await DelayAsync(request.DelayMs, request.Text, context.CancellationToken);
        return Reply(request);
    }

    private async Task CountAsync(CountRequest request, IServerStreamWriter<CountReply> responses, ServerCallContext context)
    {
        using var watch = WatchCancellation(request.Tag, context.CancellationToken);
        for (int i = 0; request.N < 0 || i < request.N; i++)
        {
            if (i > 0)
            {
                await DelayAsync(request.DelayMs, request.Tag, context.CancellationToken);
            }

            await responses.WriteAsync(new CountReply { I = i });
        }

        if (request.FailCode != 0)
        {
            throw new RpcException((StatusCode)request.FailCode, $"failed after {request.N}");
        }
    }

    private static async Task<SumReply> SumAsync(IAsyncEnumerable<SumRequest> requests, ServerCallContext context)
    {
        var reply = new SumReply();
        await foreach (var request in requests)
        {
            if (request.Value < 0)
            {
                throw new RpcException(StatusCode.InvalidArgument, $"negative value {request.Value}");
            }

            reply.Total += request.Value;
            reply.Count++;
        }

        return reply;
    }

    private async Task ChatAsync(IAsyncEnumerable<EchoRequest> requests, IServerStreamWriter<EchoReply> responses, ServerCallContext context)
    {
        await foreach (var request in requests)
        {
            await DelayAsync(request.DelayMs, request.Text, context.CancellationToken);
            await responses.WriteAsync(Reply(request));
        }
    }

    private static EchoReply Reply(EchoRequest request)
    {
        if (request.FailCode != 0)
        {
            throw new RpcException((StatusCode)request.FailCode, request.FailMessage);
        }

        return new EchoReply { Text = request.Text, Payload = ByteString.CopyFrom(new byte[request.ReplySize]) };
    }

    private async Task DelayAsync(int ms, string tag, CancellationToken ct)
    {
        if (ms == 0)
        {
            return;
        }

        using var watch = WatchCancellation(tag, ct);
        Signal("started:" + tag).TrySetResult();
        await Task.Delay(ms, ct);
    }

    private CancellationTokenRegistration WatchCancellation(string tag, CancellationToken ct) =>
        ct.Register(() => Signal("cancelled:" + tag).TrySetResult());

    private TaskCompletionSource Signal(string tag) =>
        signals.GetOrAdd(tag, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
}
