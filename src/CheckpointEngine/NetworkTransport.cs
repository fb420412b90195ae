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

    /// <summary>The port of the data lane, a plain TCP listener on <see cref="Host"/> that takes pushes without HTTP/2
    /// (<see cref="DataLaneServer"/>): 0 picks a free one (reported to senders by Status), null runs none, so that
    /// pushes come over gRPC.</summary>
    public int? DataLanePort { get; init; } = 0;

    /// <summary>Parses a <c>--data-lane-port</c> value: a port (0: any free one) or "off" (null: no lane).</summary>
    public static int? ParseDataLanePort(string text) =>
        text.Equals("off", StringComparison.OrdinalIgnoreCase) ? null
        : int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int port) && port <= 65535 ? port
        : throw new K2RL.Common.ConfigException($"--data-lane-port '{text}' is not a port (0-65535; 0: any free one) or 'off'");

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
        if (options.DataLanePort is { } lanePort)
        {
            try
            {
                node.StartDataLane(options.Host, lanePort);
            }
            catch
            {
                await server.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        var receiver = new NetworkWeightReceiver(server, node);
        if (options.Peers.Count > 0)
        {
            await node.FetchFromAsync(options.Peers, ct).ConfigureAwait(false);
        }

        return receiver;
    }

    public bool TryGetNewer(long currentVersion, out WeightSet? weights) => Slot.TryGetNewer(currentVersion, out weights);

    public void Release(WeightSet weights) => Slot.Release(weights);

    /// <summary>The data lane's port (0: none).</summary>
    public int DataLanePort => Node.DataLanePort;

    public async ValueTask DisposeAsync()
    {
        await Node.StopDataLaneAsync().ConfigureAwait(false);
        await server.DisposeAsync().ConfigureAwait(false);
        Node.Dispose();
    }
}

/// <summary>How a <see cref="NetworkWeightPublisher"/> ships versions.</summary>
public sealed record NetworkPublisherOptions
{
    public WeightDtype Dtype { get; init; } = WeightDtype.F32;

    public long BucketCapBytes { get; init; } = BucketPlan.DefaultCapBytes;

    /// <summary>Groups the receivers are split into, each fed by this publisher through its first receiver (1: the
    /// trainer's link carries each version once; the receiver count: a star).</summary>
    public int Chains { get; init; } = 1;

    /// <summary>How many next hops each receiver relays to (1: each group is a chain; k: a k-ary tree, the group split
    /// again into k subtrees at every hop: depth log_k of the receivers instead of their number).</summary>
    public int Fanout { get; init; } = 1;

    /// <summary>The relay named in benchmarks and the CLI: "chain" or "tree" (k groups from the publisher, each a k-ary tree).</summary>
    public static NetworkPublisherOptions Topology(string relay, int fanout, WeightDtype dtype, long bucketCapBytes) => relay switch
    {
        "chain" => new NetworkPublisherOptions { Dtype = dtype, BucketCapBytes = bucketCapBytes },
        "tree" => new NetworkPublisherOptions { Dtype = dtype, BucketCapBytes = bucketCapBytes, Chains = fanout, Fanout = fanout },
        _ => throw new K2RL.Common.ConfigException($"relay '{relay}' is not 'chain' or 'tree'"),
    };

    /// <summary>A test corrupts buckets on the wire: (attempt, bucket, bytes) → the bytes sent.</summary>
    internal Func<int, int, Google.Protobuf.ByteString, Google.Protobuf.ByteString>? Tamper { get; init; }
}

/// <summary>
/// The trainer's network transport: each version is encoded once (the host copy, bucket by bucket with checksums,
/// each bucket while the one before is on the wire: <see cref="StreamedVersion"/>) and pushed to the head of each group
/// of receivers, which relay every bucket on as soon as they verified it, in a chain
/// or a k-ary tree (<see cref="NetworkPublisherOptions.Fanout"/>), so the trainer's link carries each version once per
/// group, not once per receiver. A receiver that a chain could not reach through its
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
    private readonly PushClients pushClients;
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

        pushClients = new PushClients(a => channels[new Uri(a)]);
    }

    public long LatestVersion { get; private set; } = -1;

    /// <summary>The receivers the last version did not reach, with why.</summary>
    public IReadOnlyList<string> LastFailures { get; private set; } = [];

    /// <summary>The receivers the relays did not reach with the last version, which this publisher then pushed to directly.</summary>
    public IReadOnlyList<Uri> LastDirect { get; private set; } = [];

    /// <summary>Blocks the calling thread (the trainer's) until every receiver holds the version or was found down (the
    /// buffer is read while the version streams out, so it must not change until this returns); from async code (or a
    /// thread-pool thread) call <see cref="PublishAsync"/>, which blocks no thread.</summary>
    public void Publish(long version, ReadOnlySpan<float> parameters) =>
        K2RL.Kernels.PinnedMemory<float>.Run(parameters, memory =>
        {
            Task.Run(() => PublishAsync(version, memory)).GetAwaiter().GetResult();
            return true;
        });

    /// <summary>As <see cref="Publish"/>: each bucket is encoded (copied, hashed) while the one before is on the wire, so
    /// <paramref name="parameters"/> must not change until the returned task completes.</summary>
    public async Task PublishAsync(long version, ReadOnlyMemory<float> parameters, CancellationToken ct = default)
    {
        if (version <= LatestVersion)
        {
            throw new WeightTransferException($"weight version {version} is not above the last published version {LatestVersion}");
        }

        if (parameters.Length != parameterCount)
        {
            throw new ArgumentException($"parameter buffer has {parameters.Length} floats; this publisher's layout has {parameterCount}");
        }

        var streamed = new StreamedVersion(version, parameters, tensors, options.Dtype, options.BucketCapBytes, reuse: last);
        last = null;   // its buffer is being overwritten
        await PushAsync(streamed, ct).ConfigureAwait(false);
        LatestVersion = version;
    }

    public void Dispose()
    {
        foreach (var c in channels.Values)
        {
            c.Dispose();
        }
    }

    private async Task PushAsync(StreamedVersion streamed, CancellationToken ct)
    {
        var chains = NetworkPush.Groups(receivers, options.Chains);
        var refused = new System.Collections.Concurrent.ConcurrentDictionary<Uri, string>();
        await Task.WhenAll(chains.Select(c => PushChainAsync(streamed, c, refused, ct))).ConfigureAwait(false);
        last = streamed.Finish();
        var held = HeldWeights.From(last);
        // A hop that failed cut the chain after it: whoever still lacks the version gets it directly.
        var failures = new List<string>();
        var direct = new List<Uri>();
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

                direct.Add(r);
                var reply = await pushClients.PushAsync(r.ToString(), c => NetworkPush.PushWithRepairAsync(c, held, [], 1, options.Tamper, ct), ct)
                    .ConfigureAwait(false);
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
        LastDirect = direct;
    }

    private async Task PushChainAsync(IBucketSource held, List<Uri> chain, System.Collections.Concurrent.ConcurrentDictionary<Uri, string> refused,
        CancellationToken ct)
    {
        try
        {
            var client = await pushClients.ForAsync(chain[0].ToString(), ct).ConfigureAwait(false);
            await NetworkPush.PushWithRepairAsync(client, held, chain.Skip(1).Select(u => u.ToString()).ToList(), options.Fanout, options.Tamper, ct)
                .ConfigureAwait(false);
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
