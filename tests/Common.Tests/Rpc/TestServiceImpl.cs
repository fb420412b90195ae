using System.Collections.Concurrent;
using Google.Protobuf;
using Grpc.Core;
using K2RL.Common.Tests.Rpc.Proto;

namespace K2RL.Common.Tests.Rpc;

/// <summary>
/// The test service in C#, with the same behaviour as tests/interop/server.js. It records which calls saw
/// their cancellation token fire, by tag (Echo: the text; Count: the tag).
/// </summary>
public sealed class TestServiceImpl : TestService.TestServiceBase
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource> signals = new();

    /// <summary>Completes when the handler of the call tagged <paramref name="tag"/> has begun its delay.</summary>
    public Task DelayStarted(string tag) => Signal("started:" + tag).Task;

    /// <summary>Completes when the handler of the call tagged <paramref name="tag"/> has seen its token fire.</summary>
    public Task CancellationSeen(string tag) => Signal("cancelled:" + tag).Task;

    public override async Task<EchoReply> Echo(EchoRequest request, ServerCallContext context)
    {
        using var watch = WatchCancellation(request.Text, context.CancellationToken);
        await DelayAsync(request.DelayMs, request.Text, context.CancellationToken);
        return Reply(request);
    }

    public override async Task Count(CountRequest request, IServerStreamWriter<CountReply> responses, ServerCallContext context)
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
            throw new RpcException(new Status((StatusCode)request.FailCode, $"failed after {request.N}"));
        }
    }

    public override async Task<SumReply> Sum(IAsyncStreamReader<SumRequest> requests, ServerCallContext context)
    {
        var reply = new SumReply();
        await foreach (var request in requests.ReadAllAsync(context.CancellationToken))
        {
            if (request.Value < 0)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, $"negative value {request.Value}"));
            }

            reply.Total += request.Value;
            reply.Count++;
        }

        return reply;
    }

    public override async Task Chat(IAsyncStreamReader<EchoRequest> requests, IServerStreamWriter<EchoReply> responses, ServerCallContext context)
    {
        await foreach (var request in requests.ReadAllAsync(context.CancellationToken))
        {
            await DelayAsync(request.DelayMs, request.Text, context.CancellationToken);
            await responses.WriteAsync(Reply(request));
        }
    }

    private static EchoReply Reply(EchoRequest request)
    {
        if (request.FailCode != 0)
        {
            throw new RpcException(new Status((StatusCode)request.FailCode, request.FailMessage));
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
