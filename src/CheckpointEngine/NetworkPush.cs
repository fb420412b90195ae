using Google.Protobuf;
using Grpc.Core;
using Wire = K2RL.Protos.V1;

namespace K2RL.CheckpointEngine;

/// <summary>A version as a holder keeps it to serve on: its manifest and each bucket's wire bytes.</summary>
public sealed record HeldWeights(WeightManifest Manifest, ByteString[] Buckets)
{
    public static HeldWeights From(EncodedVersion encoded) => new(encoded.Manifest,
        Enumerable.Range(0, encoded.BucketCount).Select(i => UnsafeByteOperations.UnsafeWrap(encoded.Bucket(i))).ToArray());
}

/// <summary>
/// The sending half of k2rl.v1.Checkpoint's Push, shared by the trainer's publisher and every relaying receiver: the
/// manifest, then the buckets; when the receiver reports buckets missing (failed their checksum), those alone are pushed
/// again, a few times at most.
/// </summary>
internal static class NetworkPush
{
    public const int RepairAttempts = 3;

    /// <summary>Pushes <paramref name="held"/> to <paramref name="client"/> until it holds it or the repairs run out.</summary>
    public static async Task<Wire.PushReply> PushWithRepairAsync(Wire.Checkpoint.CheckpointClient client, HeldWeights held,
        IReadOnlyList<string> relayTo, Func<int, int, ByteString, ByteString>? tamper, CancellationToken ct)
    {
        IEnumerable<int> indices = Enumerable.Range(0, held.Buckets.Length);
        for (int attempt = 0; ; attempt++)
        {
            var reply = await PushAsync(client, held, indices, relayTo, attempt, tamper, ct).ConfigureAwait(false);
            if (reply.MissingBuckets.Count == 0 || attempt == RepairAttempts)
            {
                return reply;
            }

            indices = reply.MissingBuckets.ToList();
        }
    }

    private static async Task<Wire.PushReply> PushAsync(Wire.Checkpoint.CheckpointClient client, HeldWeights held, IEnumerable<int> indices,
        IReadOnlyList<string> relayTo, int attempt, Func<int, int, ByteString, ByteString>? tamper, CancellationToken ct)
    {
        using var call = client.Push(cancellationToken: ct);
        var first = new Wire.WeightChunk { Manifest = held.Manifest.ToWire() };
        first.RelayTo.AddRange(relayTo);
        await call.RequestStream.WriteAsync(first, ct).ConfigureAwait(false);
        foreach (int i in indices)
        {
            var data = tamper?.Invoke(attempt, i, held.Buckets[i]) ?? held.Buckets[i];
            await call.RequestStream.WriteAsync(Chunk(held.Manifest.Version, i, data), ct).ConfigureAwait(false);
        }

        await call.RequestStream.CompleteAsync().ConfigureAwait(false);
        return await call.ResponseAsync.ConfigureAwait(false);
    }

    public static Wire.WeightChunk Chunk(long version, int index, ByteString data) =>
        new() { Bucket = new Wire.WeightBucket { Version = version, Index = index, Data = data } };

    /// <summary>An <see cref="RpcException"/> carrying a bad-input <see cref="WeightTransferException"/>'s message.</summary>
    public static RpcException Refused(StatusCode code, string message) => new(new Status(code, message));
}
