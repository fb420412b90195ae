using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using K2RL.Common.Rpc;
using Wire = K2RL.Protos.V1;

namespace K2RL.CheckpointEngine;

/// <summary>
/// The data lane's framing: k2rl.v1.Checkpoint's Push (the same <see cref="Wire.WeightChunk"/>s, the same
/// <see cref="Wire.PushReply"/> or status) on a plain TCP connection, one push per connection. gRPC stays the control
/// plane (Status, Fetch, and Push for peers without a lane); the lane exists because the managed HTTP/2 stack costs
/// more CPU per byte than moving the bytes (docs/BENCHMARKS.md: over 90 % of a gRPC push's CPU), where a lane's bucket
/// goes from the sender's buffer to the socket and from the socket into the receiver's pooled array with no copy between.
/// <code>
/// sender → receiver: "K2RLCKP1", then frames [type u8][length i32 LE][payload]:
///   1 message  payload = a WeightChunk (the manifest, relay_to, fanout)
///   2 bucket   payload = version i64, index i32, checksum u64, then the bucket's wire bytes
///   3 end      payload empty: the push is complete (gRPC's CompleteAsync)
/// receiver → sender, once: 4 reply  payload = status code i32, detail length i32, detail UTF-8, then a PushReply
/// </code>
/// </summary>
internal static class DataLaneFrames
{
    public const byte Message = 1;
    public const byte Bucket = 2;
    public const byte End = 3;
    public const byte Reply = 4;

    /// <summary>Type and length.</summary>
    public const int HeaderBytes = 5;

    /// <summary>A bucket frame's version, index and checksum.</summary>
    public const int BucketHeaderBytes = 20;

    public static ReadOnlySpan<byte> Preface => "K2RLCKP1"u8;

    /// <summary>How long a sender waits for the receiver's reply once its connection broke (the receiver refused the push
    /// and closed: its reply says why).</summary>
    public static readonly TimeSpan ReplyGrace = TimeSpan.FromSeconds(2);

    public static void WriteHeader(Span<byte> into, byte type, int length)
    {
        into[0] = type;
        BinaryPrimitives.WriteInt32LittleEndian(into[1..], length);
    }
}

/// <summary>
/// A receiver's data lane: a TCP listener whose connections each carry one push into <see cref="CheckpointNode"/>
/// (the same code as a gRPC push: checks, relays, repairs, timeouts). A stream that is not the lane's framing, a frame
/// above the receiver's limit or an unknown frame type is refused with INVALID_ARGUMENT (RESOURCE_EXHAUSTED for the
/// size) in a reply naming it; the receiver keeps its version.
/// </summary>
internal sealed class DataLaneServer : IAsyncDisposable
{
    private readonly Socket listener;
    private readonly CheckpointNode node;
    private readonly int maxMessageBytes;
    private readonly CancellationTokenSource stopping = new();
    private readonly ConcurrentDictionary<Task, bool> serving = new();
    private readonly Task accepting;
    private long pushes;
    private int disposed;

    private DataLaneServer(Socket listener, CheckpointNode node, int maxMessageBytes)
    {
        this.listener = listener;
        this.node = node;
        this.maxMessageBytes = maxMessageBytes;
        Port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        accepting = Task.Run(AcceptAsync);
    }

    public int Port { get; }

    /// <summary>Pushes that came in on the lane (taken or refused).</summary>
    public long Pushes => Interlocked.Read(ref pushes);

    public static DataLaneServer Start(CheckpointNode node, string host, int port, int maxMessageBytes)
    {
        var (bind, _) = GrpcServer.ResolveHost(host);
        var socket = new Socket(bind.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(new IPEndPoint(bind, port));
            socket.Listen(64);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new K2RL.Common.K2Exception($"the checkpoint data lane could not listen on {host}:{port}: {e.Message}", e);
        }

        return new DataLaneServer(socket, node, maxMessageBytes);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0)
        {
            return;
        }

        await stopping.CancelAsync().ConfigureAwait(false);
        listener.Dispose();
        await accepting.ConfigureAwait(false);
        await Task.WhenAll(serving.Keys).ConfigureAwait(false);
        stopping.Dispose();
    }

    private async Task AcceptAsync()
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await listener.AcceptAsync(stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (stopping.IsCancellationRequested)
                {
                    return;
                }

                continue;
            }

            connection.NoDelay = true;
            var task = ServeAsync(connection);
            serving[task] = true;
            _ = task.ContinueWith(t => serving.TryRemove(t, out _), TaskScheduler.Default);
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        await Task.Yield();
        using var owned = socket;
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        using var stop = stopping.Token.Register(socket.Dispose);
        var reader = new DataLaneReader(stream, maxMessageBytes);
        Status status;
        Wire.PushReply? reply = null;
        try
        {
            reply = await node.PushAsync(reader, stopping.Token).ConfigureAwait(false);
            status = Status.DefaultSuccess;
        }
        catch (RpcException e)
        {
            status = e.Status;
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            return;   // the sender is gone (or this receiver is stopping): no one to answer
        }
        finally
        {
            if (reader.Started)
            {
                Interlocked.Increment(ref pushes);   // a connection that never sent the preface (a port probe) is no push
            }
        }

        try
        {
            await WriteReplyAsync(stream, status, reply).ConfigureAwait(false);
            if (status.StatusCode != StatusCode.OK)
            {
                // Read (and drop) what the sender still writes until it stops, so that closing does not reset the
                // connection and lose the reply before the sender reads it.
                using var drain = CancellationTokenSource.CreateLinkedTokenSource(stopping.Token);
                drain.CancelAfter(node.ChunkTimeout);
                await reader.DrainAsync(drain.Token).ConfigureAwait(false);
            }

            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
        }
    }

    private static async Task WriteReplyAsync(Stream stream, Status status, Wire.PushReply? reply)
    {
        byte[] detail = System.Text.Encoding.UTF8.GetBytes(status.Detail ?? "");
        byte[] body = reply?.ToByteArray() ?? [];
        var frame = new byte[DataLaneFrames.HeaderBytes + 8 + detail.Length + body.Length];
        DataLaneFrames.WriteHeader(frame, DataLaneFrames.Reply, frame.Length - DataLaneFrames.HeaderBytes);
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(DataLaneFrames.HeaderBytes), (int)status.StatusCode);
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(DataLaneFrames.HeaderBytes + 4), detail.Length);
        detail.CopyTo(frame, DataLaneFrames.HeaderBytes + 8);
        body.CopyTo(frame, DataLaneFrames.HeaderBytes + 8 + detail.Length);
        await stream.WriteAsync(frame).ConfigureAwait(false);
        await stream.FlushAsync().ConfigureAwait(false);
    }
}

/// <summary>The receiving side of one lane push, as the push code reads any push: a stream of chunks. A bucket's bytes
/// are read from the socket straight into a pooled array (<see cref="BucketBuffers"/>).</summary>
internal sealed class DataLaneReader(Stream stream, int maxMessageBytes) : IAsyncStreamReader<Wire.WeightChunk>
{
    private readonly byte[] header = new byte[DataLaneFrames.HeaderBytes + DataLaneFrames.BucketHeaderBytes];
    private bool started;
    private bool ended;

    /// <summary>The sender's preface was read: this connection carries a push.</summary>
    public bool Started => started;

    public Wire.WeightChunk Current { get; private set; } = new();

    public async Task<bool> MoveNext(CancellationToken cancellationToken)
    {
        if (ended)
        {
            return false;
        }

        if (!started)
        {
            var preface = new byte[DataLaneFrames.Preface.Length];
            await ReadAsync(preface, cancellationToken).ConfigureAwait(false);
            if (!preface.AsSpan().SequenceEqual(DataLaneFrames.Preface))
            {
                throw NetworkPush.Refused(StatusCode.InvalidArgument,
                    $"not a k2rl checkpoint data-lane stream: it starts with {Convert.ToHexString(preface)}, not {Convert.ToHexString(DataLaneFrames.Preface)}");
            }

            started = true;
        }

        await ReadAsync(header.AsMemory(0, DataLaneFrames.HeaderBytes), cancellationToken).ConfigureAwait(false);
        byte type = header[0];
        int length = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(1));
        if (length < 0 || length > maxMessageBytes + DataLaneFrames.BucketHeaderBytes)
        {
            throw NetworkPush.Refused(StatusCode.ResourceExhausted,
                $"a data-lane frame of {length} bytes is beyond this receiver's limit of {maxMessageBytes} bytes per message");
        }

        switch (type)
        {
            case DataLaneFrames.Message:
            {
                var bytes = new byte[length];
                await ReadAsync(bytes, cancellationToken).ConfigureAwait(false);
                try
                {
                    Current = Wire.WeightChunk.Parser.ParseFrom(bytes);
                }
                catch (InvalidProtocolBufferException e)
                {
                    throw NetworkPush.Refused(StatusCode.InvalidArgument, $"a data-lane message frame is not a k2rl.v1.WeightChunk: {e.Message}");
                }

                return true;
            }

            case DataLaneFrames.Bucket:
            {
                if (length < DataLaneFrames.BucketHeaderBytes)
                {
                    throw NetworkPush.Refused(StatusCode.InvalidArgument, $"a data-lane bucket frame of {length} bytes is shorter than its {DataLaneFrames.BucketHeaderBytes}-byte header");
                }

                var h = header.AsMemory(DataLaneFrames.HeaderBytes, DataLaneFrames.BucketHeaderBytes);
                await ReadAsync(h, cancellationToken).ConfigureAwait(false);
                var data = BucketBuffers.Rent(length - DataLaneFrames.BucketHeaderBytes);
                await ReadAsync(data, cancellationToken).ConfigureAwait(false);
                var span = h.Span;
                Current = new Wire.WeightChunk
                {
                    Bucket = new Wire.WeightBucket
                    {
                        Version = BinaryPrimitives.ReadInt64LittleEndian(span),
                        Index = BinaryPrimitives.ReadInt32LittleEndian(span[8..]),
                        Checksum = BinaryPrimitives.ReadUInt64LittleEndian(span[12..]),
                        Data = UnsafeByteOperations.UnsafeWrap(data),
                    },
                };
                return true;
            }

            case DataLaneFrames.End when length == 0:
                ended = true;
                return false;

            default:
                throw NetworkPush.Refused(StatusCode.InvalidArgument, $"unknown data-lane frame type {type} (length {length})");
        }
    }

    /// <summary>Reads and drops whatever arrives until the sender closes or the token fires.</summary>
    public async Task DrainAsync(CancellationToken ct)
    {
        var sink = new byte[64 << 10];
        while (await stream.ReadAsync(sink, ct).ConfigureAwait(false) > 0)
        {
        }
    }

    private async Task ReadAsync(Memory<byte> into, CancellationToken ct)
    {
        int got = await stream.ReadAtLeastAsync(into, into.Length, throwOnEndOfStream: false, ct).ConfigureAwait(false);
        if (got < into.Length)
        {
            throw new IOException(started ? "the sender closed the data lane in the middle of a push" : "the sender closed the data lane before its preface");
        }
    }
}

/// <summary>
/// A push over a receiver's data lane, as the push code writes any push (<see cref="AsyncClientStreamingCall{TRequest,TResponse}"/>):
/// connected when created; a write after the receiver refused the push throws the receiver's status, one that finds the
/// connection broken throws UNAVAILABLE naming the lane.
/// </summary>
internal sealed class DataLaneCall : IClientStreamWriter<Wire.WeightChunk>
{
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket socket = new(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
    private readonly string lane;
    private readonly TaskCompletionSource<Wire.PushReply> reply = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly byte[] header = new byte[DataLaneFrames.HeaderBytes + DataLaneFrames.BucketHeaderBytes];
    private readonly Task connected;
    private readonly CancellationTokenRegistration cancel;
    private readonly Action onBroken;
    private NetworkStream? stream;
    private Status status;

    private DataLaneCall(string host, int port, Action onBroken, CancellationToken ct)
    {
        lane = $"{host}:{port}";
        this.onBroken = onBroken;
        _ = reply.Task.ContinueWith(t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously);
        cancel = ct.Register(() =>
        {
            reply.TrySetException(new RpcException(new Status(StatusCode.Cancelled, $"the push on data lane {lane} was cancelled")));
            socket.Dispose();
        });
        connected = ConnectAsync(host, port, ct);
    }

    public WriteOptions? WriteOptions { get; set; }

    public static AsyncClientStreamingCall<Wire.WeightChunk, Wire.PushReply> Start(string host, int port, Action onBroken, CancellationToken ct)
    {
        var call = new DataLaneCall(host, port, onBroken, ct);
        return new AsyncClientStreamingCall<Wire.WeightChunk, Wire.PushReply>(call, call.reply.Task, Task.FromResult(new Metadata()),
            () => call.status, () => [], call.Dispose);
    }

    public Task WriteAsync(Wire.WeightChunk message) => WriteAsync(message, CancellationToken.None);

    public async Task WriteAsync(Wire.WeightChunk message, CancellationToken cancellationToken)
    {
        await connected.ConfigureAwait(false);
        await ThrowIfEndedAsync().ConfigureAwait(false);
        try
        {
            if (message.ChunkCase == Wire.WeightChunk.ChunkOneofCase.Bucket && message.RelayTo.Count == 0 && message.Fanout == 0)
            {
                var b = message.Bucket;
                DataLaneFrames.WriteHeader(header, DataLaneFrames.Bucket, checked(DataLaneFrames.BucketHeaderBytes + b.Data.Length));
                BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(DataLaneFrames.HeaderBytes), b.Version);
                BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(DataLaneFrames.HeaderBytes + 8), b.Index);
                BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(DataLaneFrames.HeaderBytes + 12), b.Checksum);
                await stream!.WriteAsync(header, cancellationToken).ConfigureAwait(false);
                await stream.WriteAsync(b.Data.Memory, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                byte[] body = message.ToByteArray();
                DataLaneFrames.WriteHeader(header, DataLaneFrames.Message, body.Length);
                await stream!.WriteAsync(header.AsMemory(0, DataLaneFrames.HeaderBytes), cancellationToken).ConfigureAwait(false);
                await stream.WriteAsync(body, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            throw await BrokenAsync(e).ConfigureAwait(false);
        }
    }

    public async Task CompleteAsync()
    {
        await connected.ConfigureAwait(false);
        await ThrowIfEndedAsync().ConfigureAwait(false);
        try
        {
            DataLaneFrames.WriteHeader(header, DataLaneFrames.End, 0);
            await stream!.WriteAsync(header.AsMemory(0, DataLaneFrames.HeaderBytes)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            throw await BrokenAsync(e).ConfigureAwait(false);
        }
    }

    private void Dispose()
    {
        cancel.Dispose();
        reply.TrySetException(new RpcException(new Status(StatusCode.Cancelled, $"the push on data lane {lane} was disposed")));
        stream?.Dispose();
        socket.Dispose();
    }

    private async Task ConnectAsync(string host, int port, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(ConnectTimeout);
        try
        {
            await socket.ConnectAsync(host, port, timeout.Token).ConfigureAwait(false);
            stream = new NetworkStream(socket, ownsSocket: false);
            await stream.WriteAsync(DataLaneFrames.Preface.ToArray(), ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            onBroken();
            var failed = ct.IsCancellationRequested ? new Status(StatusCode.Cancelled, $"the push on data lane {lane} was cancelled")
                : new Status(StatusCode.Unavailable, $"cannot reach data lane {lane}: {(e is OperationCanceledException ? $"no connection in {ConnectTimeout.TotalSeconds:0} s" : e.Message)}");
            status = failed;
            reply.TrySetException(new RpcException(failed));
            throw new RpcException(failed);
        }

        _ = ReadReplyAsync();
    }

    private async Task ReadReplyAsync()
    {
        try
        {
            var head = new byte[DataLaneFrames.HeaderBytes];
            await stream!.ReadExactlyAsync(head).ConfigureAwait(false);
            int length = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(1));
            if (head[0] != DataLaneFrames.Reply || length is < 8 or > 64 << 20)
            {
                Fail(new Status(StatusCode.Internal, $"data lane {lane} answered with frame type {head[0]} of {length} bytes, not a reply"));
                return;
            }

            var body = new byte[length];
            await stream.ReadExactlyAsync(body).ConfigureAwait(false);
            var code = (StatusCode)BinaryPrimitives.ReadInt32LittleEndian(body);
            int detailLength = BinaryPrimitives.ReadInt32LittleEndian(body.AsSpan(4));
            if (detailLength < 0 || detailLength > length - 8)
            {
                Fail(new Status(StatusCode.Internal, $"data lane {lane} sent a malformed reply"));
                return;
            }

            string detail = System.Text.Encoding.UTF8.GetString(body, 8, detailLength);
            if (code != StatusCode.OK)
            {
                Fail(new Status(code, detail));
                return;
            }

            var parsed = Wire.PushReply.Parser.ParseFrom(body.AsSpan(8 + detailLength));
            status = Status.DefaultSuccess;
            reply.TrySetResult(parsed);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or EndOfStreamException or InvalidProtocolBufferException)
        {
            Fail(new Status(StatusCode.Unavailable, $"data lane {lane} closed without a reply: {e.Message}"));
        }
    }

    private void Fail(Status failed)
    {
        status = failed;
        reply.TrySetException(new RpcException(failed));
    }

    private async Task ThrowIfEndedAsync()
    {
        if (reply.Task.IsCompleted)
        {
            await reply.Task.ConfigureAwait(false);   // the receiver's refusal
            throw new InvalidOperationException($"the push on data lane {lane} already has its reply");
        }
    }

    // The connection broke under a write: a receiver that refused the push replied before closing, and that says why.
    private async Task<Exception> BrokenAsync(Exception e)
    {
        if (await Task.WhenAny(reply.Task, Task.Delay(DataLaneFrames.ReplyGrace)).ConfigureAwait(false) == reply.Task && reply.Task.IsFaulted &&
            reply.Task.Exception?.InnerException is RpcException refused)
        {
            return refused;
        }

        onBroken();
        var broken = new Status(StatusCode.Unavailable, $"data lane {lane} broke: {e.Message}");
        Fail(broken);
        return new RpcException(broken);
    }
}

/// <summary>A channel's calls, with Push going over the peer's data lane.</summary>
internal sealed class DataLaneInvoker(CallInvoker grpc, string host, int port, Action onBroken) : CallInvoker
{
    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method,
        string? host1, CallOptions options)
    {
        if (method.FullName == CheckpointWire.Push.FullName && typeof(TRequest) == typeof(Wire.WeightChunk) && typeof(TResponse) == typeof(Wire.PushReply))
        {
            return (AsyncClientStreamingCall<TRequest, TResponse>)(object)DataLaneCall.Start(host, port, onBroken, options.CancellationToken);
        }

        return grpc.AsyncClientStreamingCall(method, host1, options);
    }

    public override TResponse BlockingUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host1, CallOptions options,
        TRequest request) => grpc.BlockingUnaryCall(method, host1, options, request);

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host1,
        CallOptions options, TRequest request) => grpc.AsyncUnaryCall(method, host1, options, request);

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method,
        string? host1, CallOptions options, TRequest request) => grpc.AsyncServerStreamingCall(method, host1, options, request);

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method,
        string? host1, CallOptions options) => grpc.AsyncDuplexStreamingCall(method, host1, options);
}

/// <summary>
/// The Checkpoint clients a sender (the publisher, a relaying receiver) pushes through: over a peer's data lane when its
/// Status names one, else over gRPC. A lane that cannot be reached (a firewall that admits the gRPC port only, a receiver
/// restarted on a new lane port) is not tried again for <see cref="LaneRetryAfter"/>: pushes to that peer go over gRPC,
/// then its Status is asked again.
/// </summary>
internal sealed class PushClients(Func<string, GrpcChannel> channelFor)
{
    public static readonly TimeSpan LaneRetryAfter = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan StatusDeadline = TimeSpan.FromSeconds(10);
    private readonly ConcurrentDictionary<string, int> lanePorts = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> brokenAt = new(StringComparer.Ordinal);

    /// <summary>The client for <paramref name="address"/>'s next push: its lane's, or gRPC's.</summary>
    public async Task<Wire.Checkpoint.CheckpointClient> ForAsync(string address, CancellationToken ct)
    {
        int port = await LanePortAsync(address, ct).ConfigureAwait(false);
        return port > 0 ? LaneClient(address, port) : new Wire.Checkpoint.CheckpointClient(channelFor(address));
    }

    /// <summary>Runs <paramref name="push"/> over the peer's lane, and over gRPC at once if the lane cannot be reached
    /// (or when the peer has none).</summary>
    public async Task<Wire.PushReply> PushAsync(string address, Func<Wire.Checkpoint.CheckpointClient, Task<Wire.PushReply>> push, CancellationToken ct)
    {
        int port = await LanePortAsync(address, ct).ConfigureAwait(false);
        if (port > 0)
        {
            try
            {
                return await push(LaneClient(address, port)).ConfigureAwait(false);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable && brokenAt.ContainsKey(address))
            {
                // the lane, not the push, failed: the same push over gRPC (a receiver that is down fails there too)
            }
        }

        return await push(new Wire.Checkpoint.CheckpointClient(channelFor(address))).ConfigureAwait(false);
    }

    private Wire.Checkpoint.CheckpointClient LaneClient(string address, int port) =>
        new(new DataLaneInvoker(channelFor(address).CreateCallInvoker(), new Uri(address).DnsSafeHost, port, () =>
        {
            brokenAt[address] = System.Diagnostics.Stopwatch.GetTimestamp();
            lanePorts.TryRemove(address, out _);
        }));

    private async Task<int> LanePortAsync(string address, CancellationToken ct)
    {
        if (brokenAt.TryGetValue(address, out long when))
        {
            if (System.Diagnostics.Stopwatch.GetElapsedTime(when) < LaneRetryAfter)
            {
                return 0;
            }

            brokenAt.TryRemove(address, out _);
        }

        if (lanePorts.TryGetValue(address, out int port))
        {
            return port;
        }

        try
        {
            var s = await new Wire.Checkpoint.CheckpointClient(channelFor(address))
                .StatusAsync(new Wire.CheckpointStatusRequest(), deadline: DateTime.UtcNow + StatusDeadline, cancellationToken: ct).ConfigureAwait(false);
            lanePorts[address] = s.DataLanePort;
            return s.DataLanePort;
        }
        catch (RpcException)
        {
            return 0;   // down or unreachable: the gRPC push reports it as before
        }
    }
}
