using System.Collections.Concurrent;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using K2RL.Common.Rpc;
using Wire = K2RL.Protos.V1;

namespace K2RL.CheckpointEngine;

/// <summary>
/// A network receiver's k2rl.v1.Checkpoint service: it takes a pushed version bucket by bucket into its
/// <see cref="WeightAssembler"/>, relays every verified bucket to the next receiver of the chain while the next one is
/// still arriving, repairs what the next one reports missing from its own copy, and serves its newest complete version
/// to any receiver that fetches it (a late, restarted or repairing one: checkpoint-engine's P2P path).
/// Bad input from a peer ends that call with INVALID_ARGUMENT (or FAILED_PRECONDITION for a stale version) and a
/// message naming what was wrong; the receiver keeps its version.
/// </summary>
public sealed class CheckpointNode : CheckpointService, IDisposable
{
    private readonly WeightAssembler assembler;
    private readonly GrpcClientOptions clientOptions;
    private readonly int maxMessageBytes;
    private readonly PushClients pushClients;
    private readonly SemaphoreSlim pushGate = new(1, 1);
    private readonly ConcurrentDictionary<string, GrpcChannel> channels = new(StringComparer.Ordinal);
    private readonly object heldGate = new();
    private ByteString?[] pendingBuckets = [];
    private HeldWeights? held;
    private int serving;   // Fetch calls streaming the held version (guarded by heldGate): its buckets are not reused meanwhile

    public CheckpointNode(WeightAssembler assembler, int maxMessageBytes)
    {
        this.assembler = assembler;
        this.maxMessageBytes = maxMessageBytes;
        pushClients = new PushClients(ChannelFor);
        clientOptions = new GrpcClientOptions { MaxReceiveMessageSize = maxMessageBytes, Http2WindowBytes = NetworkReceiverOptions.WindowBytes };
    }

    public WeightAssembler Assembler => assembler;

    /// <summary>The newest complete version in wire form (what <see cref="Fetch"/> serves).</summary>
    public HeldWeights? Held
    {
        get
        {
            lock (heldGate)
            {
                return held;
            }
        }
    }

    /// <summary>Buckets that arrived corrupted (and were asked for again).</summary>
    public long CorruptBuckets => Interlocked.Read(ref corrupt);

    private long corrupt;

    /// <summary>How long a push may go without a chunk before it is dropped (a peer that stalls mid-stream must not hold
    /// the receiver: the next push waits for this one).</summary>
    public TimeSpan ChunkTimeout { get; init; } = TimeSpan.FromSeconds(30);

    public override Task<Wire.PushReply> Push(IAsyncStreamReader<Wire.WeightChunk> requestStream, ServerCallContext context) =>
        PushAsync(requestStream, context.CancellationToken);

    /// <summary>Pushes read from <see cref="DataLanePort"/> by a <see cref="DataLaneServer"/>.</summary>
    public long DataLanePushes => lane?.Pushes ?? 0;

    /// <summary>The port of this receiver's data lane (0: none), reported by <see cref="Status"/> so that senders use it.</summary>
    public int DataLanePort => lane?.Port ?? 0;

    private DataLaneServer? lane;

    /// <summary>Starts this receiver's data lane (see <see cref="DataLaneServer"/>) on <paramref name="host"/>:<paramref name="port"/> (0: any free port).</summary>
    internal void StartDataLane(string host, int port) => lane = DataLaneServer.Start(this, host, port, maxMessageBytes);

    internal ValueTask StopDataLaneAsync() => lane?.DisposeAsync() ?? ValueTask.CompletedTask;

    /// <summary>One push, from gRPC or the data lane: the manifest, then buckets, until the sender completes.</summary>
    internal async Task<Wire.PushReply> PushAsync(IAsyncStreamReader<Wire.WeightChunk> requestStream, CancellationToken callToken)
    {
        using var stall = CancellationTokenSource.CreateLinkedTokenSource(callToken);
        var ct = stall.Token;
        stall.CancelAfter(ChunkTimeout);   // a sender that opens a push and sends nothing is dropped too
        bool any;
        try
        {
            any = await requestStream.MoveNext(ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stall.IsCancellationRequested && !callToken.IsCancellationRequested)
        {
            throw NetworkPush.Refused(StatusCode.DeadlineExceeded, $"no manifest for {ChunkTimeout.TotalSeconds:0} s: the push is dropped");
        }

        if (!any)
        {
            throw NetworkPush.Refused(StatusCode.InvalidArgument, "empty push: the first chunk must be the manifest");
        }

        stall.CancelAfter(Timeout.InfiniteTimeSpan);   // waiting for the push before this one is not this sender's stall
        var first = requestStream.Current;
        if (first.ChunkCase != Wire.WeightChunk.ChunkOneofCase.Manifest)
        {
            throw NetworkPush.Refused(StatusCode.InvalidArgument, $"the first chunk of a push must be the manifest, not a {first.ChunkCase}");
        }

        await pushGate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            stall.CancelAfter(ChunkTimeout);   // from here on this push holds the receiver: it must keep coming
            var manifest = Begin(first.Manifest);
            var relays = (await Task.WhenAll(NetworkPush.Groups(first.RelayTo, first.Fanout).Select(g => StartRelayAsync(first.Manifest, g, first.Fanout, ct)))
                .ConfigureAwait(false)).ToList();
            try
            {
                await TakeBucketsAsync(requestStream, manifest, relays, stall, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stall.IsCancellationRequested && !callToken.IsCancellationRequested)
            {
                relays.ForEach(r => r.Call.Dispose());
                throw NetworkPush.Refused(StatusCode.DeadlineExceeded, $"no chunk of version {manifest.Version} for {ChunkTimeout.TotalSeconds:0} s: the push is dropped");
            }
            catch
            {
                relays.ForEach(r => r.Call.Dispose());   // the sender is gone: so is this hop's push to the next ones
                throw;
            }

            Complete(manifest);
            stall.CancelAfter(Timeout.InfiniteTimeSpan);   // the next hops' repairs may take longer than one chunk's wait
            var errors = await Task.WhenAll(relays.Select(r => FinishRelayAsync(r, manifest.Version, ct))).ConfigureAwait(false);
            string relayError = string.Join("; ", errors.Where(e => e.Length > 0));
            var reply = new Wire.PushReply { HeldVersion = assembler.HeldVersion, RelayError = relayError };
            if (assembler.Pending?.Version == manifest.Version)
            {
                reply.MissingBuckets.AddRange(assembler.Missing);
            }

            return reply;
        }
        finally
        {
            pushGate.Release();
        }
    }

    public override async Task Fetch(Wire.FetchRequest request, IServerStreamWriter<Wire.WeightChunk> responseStream, ServerCallContext context)
    {
        HeldWeights? h;
        lock (heldGate)
        {
            h = held;
            serving++;
        }

        try
        {
            await ServeAsync(h, request, responseStream).ConfigureAwait(false);
        }
        finally
        {
            lock (heldGate)
            {
                serving--;
            }
        }
    }

    private static async Task ServeAsync(HeldWeights? h, Wire.FetchRequest request, IServerStreamWriter<Wire.WeightChunk> responseStream)
    {
        if (h is null || (request.Version != 0 && request.Version != h.Manifest.Version))
        {
            throw NetworkPush.Refused(StatusCode.NotFound, h is null ? "this receiver holds no version yet" : $"this receiver holds version {h.Manifest.Version}, not {request.Version}");
        }

        var bad = request.Buckets.Where(i => i < 0 || i >= h.Buckets.Length).ToList();
        if (bad.Count > 0)
        {
            throw NetworkPush.Refused(StatusCode.InvalidArgument, $"bucket {bad[0]} is beyond version {h.Manifest.Version}'s {h.Buckets.Length} buckets");
        }

        await responseStream.WriteAsync(new Wire.WeightChunk { Manifest = h.Manifest.ToWire() }).ConfigureAwait(false);
        foreach (int i in request.Buckets.Count > 0 ? request.Buckets : Enumerable.Range(0, h.Buckets.Length))
        {
            await responseStream.WriteAsync(NetworkPush.Chunk(h.Manifest.Version, i, h.Buckets[i], h.Manifest.Buckets[i].Checksum)).ConfigureAwait(false);
        }
    }

    public override Task<Wire.CheckpointStatusReply> Status(Wire.CheckpointStatusRequest request, ServerCallContext context) =>
        Task.FromResult(new Wire.CheckpointStatusReply { HeldVersion = assembler.HeldVersion, DataLanePort = DataLanePort });

    /// <summary>
    /// Takes the newest complete version from the first of <paramref name="peers"/> that has one newer than the held
    /// one (a late or restarted receiver); buckets that fail their checksum are fetched again. Returns the version
    /// taken, or null when no peer had a newer one.
    /// </summary>
    public async Task<long?> FetchFromAsync(IEnumerable<Uri> peers, CancellationToken ct = default)
    {
        var errors = new List<string>();
        foreach (var peer in peers)
        {
            try
            {
                if (await FetchFromAsync(ChannelFor(peer.ToString()).CreateCallInvoker(), ct).ConfigureAwait(false) is { } version)
                {
                    return version;
                }
            }
            catch (Exception e) when (e is RpcException or WeightTransferException)
            {
                errors.Add($"{peer}: {e.Message}");
            }
        }

        if (errors.Count > 0 && assembler.HeldVersion < 0)
        {
            throw new WeightTransferException("no peer served a version: " + string.Join("; ", errors));
        }

        return null;
    }

    public void Dispose()
    {
        foreach (var c in channels.Values)
        {
            c.Dispose();
        }
    }

    private async Task<long?> FetchFromAsync(CallInvoker invoker, CancellationToken ct)
    {
        await pushGate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var request = new Wire.FetchRequest();
            WeightManifest? manifest = null;
            for (int attempt = 0; attempt <= NetworkPush.RepairAttempts; attempt++)
            {
                using var call = invoker.AsyncServerStreamingCall(CheckpointWire.Fetch, null, new CallOptions(cancellationToken: ct), request);
                await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct).ConfigureAwait(false))
                {
                    if (chunk.ChunkCase == Wire.WeightChunk.ChunkOneofCase.Manifest)
                    {
                        var m = WeightManifest.FromWire(chunk.Manifest);
                        if (m.Version <= assembler.HeldVersion)
                        {
                            return null;
                        }

                        manifest = Begin(chunk.Manifest);
                        request.Version = m.Version;
                    }
                    else if (manifest is null)
                    {
                        throw new WeightTransferException("the peer sent a bucket before the manifest");
                    }
                    else
                    {
                        Take(chunk.Bucket);
                    }
                }

                if (manifest is not null && Complete(manifest))
                {
                    return manifest.Version;
                }

                request.Buckets.Clear();
                request.Buckets.AddRange(assembler.Missing);
            }

            throw new WeightTransferException($"buckets {string.Join(", ", request.Buckets)} still fail their checksums after {NetworkPush.RepairAttempts} fetches");
        }
        finally
        {
            pushGate.Release();
        }
    }

    // Checks the manifest against the model and the held version; a repeat of the version in progress keeps its buckets.
    private WeightManifest Begin(Wire.WeightManifest wire)
    {
        try
        {
            var manifest = WeightManifest.FromWire(wire);
            if (manifest.Version <= assembler.HeldVersion)
            {
                throw NetworkPush.Refused(StatusCode.FailedPrecondition, $"weight version {manifest.Version} is not newer than the held version {assembler.HeldVersion}");
            }

            if (!assembler.Begin(manifest))
            {
                pendingBuckets = new ByteString?[manifest.Buckets.Count];
            }

            return manifest;
        }
        catch (WeightTransferException e)
        {
            throw NetworkPush.Refused(StatusCode.InvalidArgument, e.Message);
        }
    }

    private BucketResult Take(Wire.WeightBucket bucket)
    {
        BucketResult result;
        try
        {
            result = assembler.Accept(bucket.Version, bucket.Index, bucket.Data.Span, bucket.Checksum);
        }
        catch (WeightTransferException e)
        {
            throw NetworkPush.Refused(StatusCode.InvalidArgument, e.Message);
        }

        if (result == BucketResult.Taken)
        {
            pendingBuckets[bucket.Index] = bucket.Data;
            return result;
        }

        if (result == BucketResult.Corrupt)
        {
            Interlocked.Increment(ref corrupt);
        }

        BucketBuffers.Return(bucket.Data);   // refused: never relayed nor held
        return result;
    }

    // When every bucket is in: the version becomes the held one (served on), and the one it replaces hands its bucket
    // arrays back unless a fetch is still streaming it.
    private bool Complete(WeightManifest manifest)
    {
        if (assembler.TryComplete() is null)
        {
            return false;
        }

        var now = new HeldWeights(assembler.LastCompleted ?? manifest, pendingBuckets.Select(b => b!).ToArray());
        HeldWeights? before;
        lock (heldGate)
        {
            before = held;
            held = now;
            if (serving > 0)
            {
                before = null;
            }
        }

        foreach (var b in before?.Buckets ?? [])
        {
            BucketBuffers.Return(b);
        }

        return true;
    }

    private async Task TakeBucketsAsync(IAsyncStreamReader<Wire.WeightChunk> requests, WeightManifest manifest, List<Relay> relays,
        CancellationTokenSource stall, CancellationToken ct)
    {
        while (await requests.MoveNext(ct).ConfigureAwait(false))
        {
            stall.CancelAfter(ChunkTimeout);
            var chunk = requests.Current;
            if (chunk.ChunkCase != Wire.WeightChunk.ChunkOneofCase.Bucket)
            {
                throw NetworkPush.Refused(StatusCode.InvalidArgument, $"a push of version {manifest.Version} carries a second {chunk.ChunkCase}; only buckets follow the manifest");
            }

            if (Take(chunk.Bucket) == BucketResult.Taken)
            {
                // One bucket in flight to each next hop while the next one arrives here.
                foreach (var relay in relays)
                {
                    await relay.WaitAsync().ConfigureAwait(false);
                    relay.Send(chunk, ct);
                }
            }
        }

        foreach (var relay in relays)
        {
            await relay.WaitAsync().ConfigureAwait(false);
        }
    }

    private async Task<Relay> StartRelayAsync(Wire.WeightManifest manifest, IReadOnlyList<string> group, int fanout, CancellationToken ct)
    {
        var client = await pushClients.ForAsync(group[0], ct).ConfigureAwait(false);
        var call = client.Push(cancellationToken: ct);
        var head = new Wire.WeightChunk { Manifest = manifest, Fanout = fanout };
        head.RelayTo.AddRange(group.Skip(1));
        var relay = new Relay(group[0], client, call, group.Skip(1).ToList(), fanout);
        relay.Send(head, ct);
        return relay;
    }

    private async Task<string> FinishRelayAsync(Relay relay, long version, CancellationToken ct)
    {
        try
        {
            await relay.WaitAsync().ConfigureAwait(false);
            if (relay.Failed)
            {
                return $"{relay.Next}: {relay.Error}";
            }

            await relay.Call.RequestStream.CompleteAsync().ConfigureAwait(false);
            var reply = await relay.Call.ResponseAsync.ConfigureAwait(false);
            var mine = Held;
            if (reply.MissingBuckets.Count > 0 && mine?.Manifest.Version == version)
            {
                reply = await NetworkPush.PushWithRepairAsync(relay.Client, mine!, relay.Rest, relay.Fanout, null, ct).ConfigureAwait(false);
            }

            return reply.MissingBuckets.Count > 0 ? $"{relay.Next}: buckets {string.Join(", ", reply.MissingBuckets)} still missing"
                : reply.RelayError.Length > 0 ? reply.RelayError : "";
        }
        catch (RpcException e)
        {
            return $"{relay.Next}: {e.Status.StatusCode} {e.Status.Detail}";
        }
        finally
        {
            relay.Call.Dispose();
        }
    }

    private GrpcChannel ChannelFor(string address) => channels.GetOrAdd(address, a => GrpcChannels.Create(a, clientOptions));

    /// <summary>This hop's push to one next hop: at most one chunk in flight; a failed write marks it failed (the rest of
    /// the version still arrives here, and the publisher's sweep pushes to whoever lacks it).</summary>
    private sealed class Relay(string next, Wire.Checkpoint.CheckpointClient client, AsyncClientStreamingCall<Wire.WeightChunk, Wire.PushReply> call,
        List<string> rest, int fanout)
    {
        private Task writing = Task.CompletedTask;

        public string Next { get; } = next;

        public Wire.Checkpoint.CheckpointClient Client { get; } = client;

        public AsyncClientStreamingCall<Wire.WeightChunk, Wire.PushReply> Call { get; } = call;

        public List<string> Rest { get; } = rest;

        public int Fanout { get; } = fanout;

        public bool Failed { get; private set; }

        public string Error { get; private set; } = "";

        public void Send(Wire.WeightChunk chunk, CancellationToken ct)
        {
            if (!Failed)
            {
                writing = Call.RequestStream.WriteAsync(chunk, ct);
            }
        }

        public async Task WaitAsync()
        {
            try
            {
                await writing.ConfigureAwait(false);
            }
            catch (Exception e) when (e is RpcException or IOException or InvalidOperationException)
            {
                Failed = true;
                Error = e.Message;
            }
            finally
            {
                writing = Task.CompletedTask;
            }
        }
    }
}
