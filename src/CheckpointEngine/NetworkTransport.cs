using Grpc.Net.Client;
using K2RL.Common.Rpc;
using Wire = K2RL.Protos.V1;

namespace K2RL.CheckpointEngine;

/// <summary>Where a <see cref="NetworkWeightReceiver"/> listens and whom it asks for the current version when it starts.</summary>
public sealed record NetworkReceiverOptions
{
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>0 picks a free port (see <see cref="NetworkWeightReceiver.Address"/>).</summary>
    public int Port { get; init; }

    /// <summary>Holders to fetch the current version from at start (a late or restarted receiver), tried in order.</summary>
    public IReadOnlyList<Uri> Peers { get; init; } = [];

    /// <summary>The largest message taken: a bucket (at most the sender's cap or its largest tensor) or a manifest.</summary>
    public int MaxMessageBytes { get; init; } = 256 << 20;

    /// <summary>The receiver holds only some of the sender's tensors.</summary>
    public bool Shard { get; init; }

    /// <summary>A push that sends no chunk for this long is dropped (<see cref="CheckpointNode.ChunkTimeout"/>).</summary>
    public TimeSpan ChunkTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The HTTP/2 receive window, a few buckets deep, so a sender streams without waiting on window updates.</summary>
    public const int WindowBytes = 16 << 20;
}

/// <summary>
/// A receiver on another node (or in another process): a gRPC server with the k2rl.v1.Checkpoint service
/// (<see cref="CheckpointNode"/>) whose complete versions a rollout engine reads at its step boundaries. Given
/// <see cref="NetworkReceiverOptions.Peers"/>, it first fetches the current version from one of them.
/// </summary>
public sealed class NetworkWeightReceiver : IWeightSource, IAsyncDisposable
{
    private readonly GrpcServer server;

    private NetworkWeightReceiver(GrpcServer server, CheckpointNode node)
    {
        this.server = server;
        Node = node;
    }

    public CheckpointNode Node { get; }

    public Uri Address => server.Address;

    public WeightSlot Slot => Node.Assembler.Slot;

    public long HeldVersion => Node.Assembler.HeldVersion;

    public static async Task<NetworkWeightReceiver> StartAsync(IReadOnlyList<TensorSpec> model, NetworkReceiverOptions? options = null,
        long? length = null, CancellationToken ct = default)
    {
        options ??= new NetworkReceiverOptions();
        var node = new CheckpointNode(new WeightAssembler(model, length, options.Shard), options.MaxMessageBytes) { ChunkTimeout = options.ChunkTimeout };
        var server = await GrpcServer.Create(new GrpcServerOptions
            {
                Host = options.Host, Port = options.Port, MaxReceiveMessageSize = options.MaxMessageBytes, Http2WindowBytes = NetworkReceiverOptions.WindowBytes,
            })
            .AddService(node).StartAsync(ct).ConfigureAwait(false);
        var receiver = new NetworkWeightReceiver(server, node);
        if (options.Peers.Count > 0)
        {
            await node.FetchFromAsync(options.Peers, ct).ConfigureAwait(false);
        }

        return receiver;
    }

    public bool TryGetNewer(long currentVersion, out WeightSet? weights) => Slot.TryGetNewer(currentVersion, out weights);

    public void Release(WeightSet weights) => Slot.Release(weights);

    public async ValueTask DisposeAsync()
    {
        await server.DisposeAsync().ConfigureAwait(false);
        Node.Dispose();
    }
}

/// <summary>How a <see cref="NetworkWeightPublisher"/> ships versions.</summary>
public sealed record NetworkPublisherOptions
{
    public WeightDtype Dtype { get; init; } = WeightDtype.F32;

    public long BucketCapBytes { get; init; } = BucketPlan.DefaultCapBytes;

    /// <summary>Chains the receivers are split into (1: one chain; the receiver count: a star; between: a tree whose
    /// root, this publisher, feeds each chain's head).</summary>
    public int Chains { get; init; } = 1;

    /// <summary>A test corrupts buckets on the wire: (attempt, bucket, bytes) → the bytes sent.</summary>
    internal Func<int, int, Google.Protobuf.ByteString, Google.Protobuf.ByteString>? Tamper { get; init; }
}

/// <summary>
/// The trainer's network transport: each version is encoded once (the host copy, bucket by bucket with checksums) and
/// pushed to the head of each chain of receivers, which relay it on hop by hop as it arrives, so the trainer's link
/// carries each version once per chain, not once per receiver. A receiver that a chain could not reach through its
/// relay (a dead hop) is pushed to directly; one that is down is reported in <see cref="LastFailures"/> and gets the
/// version from any holder when it comes back. Publishing is refused only for a stale version.
/// </summary>
public sealed class NetworkWeightPublisher : IWeightPublisher, IDisposable
{
    private readonly IReadOnlyList<Uri> receivers;
    private readonly long parameterCount;
    private readonly IReadOnlyList<TensorSpec> tensors;
    private readonly NetworkPublisherOptions options;
    private readonly Dictionary<Uri, GrpcChannel> channels = [];
    private EncodedVersion? last;

    public NetworkWeightPublisher(IReadOnlyList<Uri> receivers, long parameterCount, IReadOnlyList<TensorSpec> tensors, NetworkPublisherOptions? options = null)
    {
        this.receivers = receivers;
        this.parameterCount = parameterCount;
        this.tensors = tensors;
        this.options = options ?? new NetworkPublisherOptions();
        foreach (var r in receivers.Distinct())
        {
            channels[r] = GrpcChannels.Create(r, new GrpcClientOptions { MaxReceiveMessageSize = 64 << 20 });   // replies only
        }
    }

    public long LatestVersion { get; private set; } = -1;

    /// <summary>The receivers the last version did not reach, with why.</summary>
    public IReadOnlyList<string> LastFailures { get; private set; } = [];

    /// <summary>Blocks the calling thread (the trainer's) until every receiver holds the version or was found down; from
    /// async code (or a thread-pool thread) call <see cref="PublishAsync"/>, which blocks no thread.</summary>
    public void Publish(long version, ReadOnlySpan<float> parameters)
    {
        var held = Encode(version, parameters);
        Task.Run(() => PushAsync(held, CancellationToken.None)).GetAwaiter().GetResult();
        LatestVersion = version;
    }

    /// <summary>As <see cref="Publish"/>; <paramref name="parameters"/> is encoded (copied) before the first await.</summary>
    public async Task PublishAsync(long version, ReadOnlyMemory<float> parameters, CancellationToken ct = default)
    {
        var held = Encode(version, parameters.Span);
        await PushAsync(held, ct).ConfigureAwait(false);
        LatestVersion = version;
    }

    private HeldWeights Encode(long version, ReadOnlySpan<float> parameters)
    {
        if (version <= LatestVersion)
        {
            throw new WeightTransferException($"weight version {version} is not above the last published version {LatestVersion}");
        }

        if (parameters.Length != parameterCount)
        {
            throw new ArgumentException($"parameter buffer has {parameters.Length} floats; this publisher's layout has {parameterCount}");
        }

        var encoded = EncodedVersion.Encode(version, parameters, tensors, options.Dtype, options.BucketCapBytes, reuse: last);
        last = encoded;
        return HeldWeights.From(encoded);
    }

    public void Dispose()
    {
        foreach (var c in channels.Values)
        {
            c.Dispose();
        }
    }

    private async Task PushAsync(HeldWeights held, CancellationToken ct)
    {
        int k = Math.Clamp(options.Chains, 1, Math.Max(1, receivers.Count));
        var chains = Enumerable.Range(0, k).Select(c => receivers.Where((_, i) => i * k / receivers.Count == c).ToList()).Where(c => c.Count > 0).ToList();
        var refused = new System.Collections.Concurrent.ConcurrentDictionary<Uri, string>();
        await Task.WhenAll(chains.Select(c => PushChainAsync(held, c, refused, ct))).ConfigureAwait(false);
        // A hop that failed cut the chain after it: whoever still lacks the version gets it directly.
        var failures = new List<string>();
        foreach (var r in receivers)
        {
            if (refused.TryGetValue(r, out string? why))
            {
                failures.Add($"{r}: {why}");
                continue;
            }

            try
            {
                var client = new Wire.Checkpoint.CheckpointClient(channels[r]);
                if ((await client.StatusAsync(new Wire.CheckpointStatusRequest(), cancellationToken: ct).ConfigureAwait(false)).HeldVersion >= held.Manifest.Version)
                {
                    continue;
                }

                var reply = await NetworkPush.PushWithRepairAsync(client, held, [], options.Tamper, ct).ConfigureAwait(false);
                if (reply.HeldVersion < held.Manifest.Version)
                {
                    failures.Add($"{r}: buckets {string.Join(", ", reply.MissingBuckets)} still missing");
                }
            }
            catch (Grpc.Core.RpcException e)
            {
                failures.Add($"{r}: {e.Status.StatusCode} {e.Status.Detail}");
            }
        }

        LastFailures = failures;
    }

    private async Task PushChainAsync(HeldWeights held, List<Uri> chain, System.Collections.Concurrent.ConcurrentDictionary<Uri, string> refused,
        CancellationToken ct)
    {
        try
        {
            var client = new Wire.Checkpoint.CheckpointClient(channels[chain[0]]);
            await NetworkPush.PushWithRepairAsync(client, held, chain.Skip(1).Select(u => u.ToString()).ToList(), options.Tamper, ct).ConfigureAwait(false);
        }
        catch (Grpc.Core.RpcException e) when (e.StatusCode is Grpc.Core.StatusCode.InvalidArgument or Grpc.Core.StatusCode.FailedPrecondition)
        {
            refused[chain[0]] = $"{e.StatusCode} {e.Status.Detail}";   // bad input for it: not pushed again
        }
        catch (Grpc.Core.RpcException)
        {
            // the head is down: the status sweep after the chains finds who lacks the version
        }
    }
}
