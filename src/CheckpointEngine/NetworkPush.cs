using Google.Protobuf;
using Grpc.Core;
using Wire = K2RL.Protos.V1;

namespace K2RL.CheckpointEngine;

/// <summary>What a push sends: the manifest first, then each bucket's wire bytes with the checksum that travels with it.</summary>
internal interface IBucketSource
{
    WeightManifest Manifest { get; }

    int BucketCount { get; }

    (ByteString Data, ulong Checksum) Bucket(int index);
}

/// <summary>A version as a holder keeps it to serve on: its manifest and each bucket's wire bytes.</summary>
public sealed record HeldWeights(WeightManifest Manifest, ByteString[] Buckets) : IBucketSource
{
    int IBucketSource.BucketCount => Buckets.Length;

    public static HeldWeights From(EncodedVersion encoded) => new(encoded.Manifest,
        Enumerable.Range(0, encoded.BucketCount).Select(i => UnsafeByteOperations.UnsafeWrap(encoded.Bucket(i))).ToArray());

    (ByteString Data, ulong Checksum) IBucketSource.Bucket(int index) => (Buckets[index], Manifest.Buckets[index].Checksum);
}

/// <summary>
/// The sending half of k2rl.v1.Checkpoint's Push, shared by the trainer's publisher and every relaying receiver: the
/// manifest, then the buckets, the next one fetched (for a streaming sender: encoded and hashed) while the one before
/// is on the wire; when the receiver reports buckets missing (failed their checksum), those alone are pushed again, a
/// few times at most.
/// </summary>
internal static class NetworkPush
{
    public const int RepairAttempts = 3;

    /// <summary>Pushes <paramref name="held"/> to <paramref name="client"/> until it holds it or the repairs run out.</summary>
    public static async Task<Wire.PushReply> PushWithRepairAsync(Wire.Checkpoint.CheckpointClient client, IBucketSource held,
        IReadOnlyList<string> relayTo, int fanout, Func<int, int, ByteString, ByteString>? tamper, CancellationToken ct)
    {
        IEnumerable<int> indices = Enumerable.Range(0, held.BucketCount);
        for (int attempt = 0; ; attempt++)
        {
            var reply = await PushAsync(client, held, indices, relayTo, fanout, attempt, tamper, ct).ConfigureAwait(false);
            if (reply.MissingBuckets.Count == 0 || attempt == RepairAttempts)
            {
                return reply;
            }

            indices = reply.MissingBuckets.ToList();
        }
    }

    private static async Task<Wire.PushReply> PushAsync(Wire.Checkpoint.CheckpointClient client, IBucketSource held, IEnumerable<int> indices,
        IReadOnlyList<string> relayTo, int fanout, int attempt, Func<int, int, ByteString, ByteString>? tamper, CancellationToken ct)
    {
        using var call = client.Push(cancellationToken: ct);
        var first = new Wire.WeightChunk { Manifest = held.Manifest.ToWire(), Fanout = fanout };
        first.RelayTo.AddRange(relayTo);
        var writing = call.RequestStream.WriteAsync(first, ct);
        foreach (int i in indices)
        {
            var (data, checksum) = held.Bucket(i);   // a streaming sender encodes it now, while the one before is on the wire
            data = tamper?.Invoke(attempt, i, data) ?? data;
            await writing.ConfigureAwait(false);
            writing = call.RequestStream.WriteAsync(Chunk(held.Manifest.Version, i, data, checksum), ct);
        }

        await writing.ConfigureAwait(false);
        await call.RequestStream.CompleteAsync().ConfigureAwait(false);
        return await call.ResponseAsync.ConfigureAwait(false);
    }

    /// <summary>
    /// <paramref name="items"/> in <paramref name="fanout"/> consecutive groups of sizes as even as can be (fewer when there
    /// are fewer items; 0 or 1: one group): the subtrees a relaying hop feeds, each through its first member.
    /// </summary>
    public static List<List<T>> Groups<T>(IReadOnlyList<T> items, int fanout)
    {
        int k = Math.Clamp(fanout, 1, Math.Max(1, items.Count));
        return Enumerable.Range(0, k).Select(g => items.Where((_, i) => i * k / items.Count == g).ToList()).Where(g => g.Count > 0).ToList();
    }

    /// <summary>A bucket message; <paramref name="checksum"/> travels with it (0: the manifest's alone).</summary>
    public static Wire.WeightChunk Chunk(long version, int index, ByteString data, ulong checksum = 0) =>
        new() { Bucket = new Wire.WeightBucket { Version = version, Index = index, Data = data, Checksum = checksum } };

    /// <summary>An <see cref="RpcException"/> carrying a bad-input <see cref="WeightTransferException"/>'s message.</summary>
    public static RpcException Refused(StatusCode code, string message) => new(new Status(code, message));
}
