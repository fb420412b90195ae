using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Google.Protobuf;
using Grpc.Core;
using Wire = K2RL.Protos.V1;

namespace K2RL.CheckpointEngine;

/// <summary>
/// The k2rl.v1.Checkpoint methods as this engine binds and calls them: the same names and wire format as the generated
/// ones (any gRPC peer interoperates), but a <see cref="Wire.WeightChunk"/> that carries a bucket is read by hand from the
/// received frames straight into a pooled array (<see cref="BucketBuffers"/>), where Protobuf's parser allocates a fresh
/// array per bucket: on a receiver that was a new multi-megabyte array per bucket, zeroed and faulted in page by page,
/// which cost more CPU than moving the bytes. Anything else (a manifest, fields in another order) goes to the
/// generated parser.
/// </summary>
internal static class CheckpointWire
{
    private const string Service = "k2rl.v1.Checkpoint";

    /// <summary>Buckets below this take the generated parser (pooling tiny arrays gains nothing).</summary>
    private const int PooledMinBytes = 64 << 10;

    private static readonly Marshaller<Wire.WeightChunk> Chunks = Marshallers.Create<Wire.WeightChunk>(Serialize, ParseChunk);

    public static readonly Method<Wire.WeightChunk, Wire.PushReply> Push = new(MethodType.ClientStreaming, Service, "Push", Chunks,
        Of(Wire.PushReply.Parser));

    public static readonly Method<Wire.FetchRequest, Wire.WeightChunk> Fetch = new(MethodType.ServerStreaming, Service, "Fetch",
        Of(Wire.FetchRequest.Parser), Chunks);

    public static readonly Method<Wire.CheckpointStatusRequest, Wire.CheckpointStatusReply> Status = new(MethodType.Unary, Service, "Status",
        Of(Wire.CheckpointStatusRequest.Parser), Of(Wire.CheckpointStatusReply.Parser));

    /// <summary>Binds <paramref name="node"/>'s methods (null when the host resolves the instance per call, as ASP.NET Core does).</summary>
    public static void Bind(ServiceBinderBase binder, CheckpointService? node)
    {
        binder.AddMethod(Push, node is null ? null : node.Push);
        binder.AddMethod(Fetch, node is null ? null : node.Fetch);
        binder.AddMethod(Status, node is null ? null : node.Status);
    }

    private static Marshaller<T> Of<T>(MessageParser<T> parser)
        where T : IMessage<T> => Marshallers.Create<T>(Serialize, c => parser.ParseFrom(c.PayloadAsReadOnlySequence()));

    private static void Serialize<T>(T message, SerializationContext context)
        where T : IMessage
    {
        context.SetPayloadLength(message.CalculateSize());
        message.WriteTo(context.GetBufferWriter());
        context.Complete();
    }

    private static Wire.WeightChunk ParseChunk(DeserializationContext context)
    {
        var payload = context.PayloadAsReadOnlySequence();
        if (!TryReadBucket(payload, out long version, out int index, out long dataAt, out int dataLength, out ulong checksum) || dataLength < PooledMinBytes)
        {
            return Wire.WeightChunk.Parser.ParseFrom(payload);
        }

        var data = BucketBuffers.Rent(dataLength);
        payload.Slice(dataAt, dataLength).CopyTo(data);
        return new Wire.WeightChunk
        {
            Bucket = new Wire.WeightBucket { Version = version, Index = index, Data = UnsafeByteOperations.UnsafeWrap(data), Checksum = checksum },
        };
    }

    // WeightChunk{ bucket = 2: WeightBucket{ version = 1, index = 2, data = 3, checksum = 4 } } and nothing else, as
    // Protobuf writes it (fields in order, zeros left out); false for anything else.
    private static bool TryReadBucket(ReadOnlySequence<byte> payload, out long version, out int index, out long dataAt, out int dataLength,
        out ulong checksum)
    {
        version = 0;
        index = 0;
        dataAt = 0;
        dataLength = 0;
        checksum = 0;
        var r = new SequenceReader<byte>(payload);
        if (!TryVarint(ref r, out ulong tag) || tag != 0x12 || !TryVarint(ref r, out ulong length) || length != (ulong)r.Remaining)
        {
            return false;
        }

        while (TryVarint(ref r, out tag))
        {
            if (!TryVarint(ref r, out ulong value))
            {
                return false;
            }

            switch (tag)
            {
                case 0x08:
                    version = (long)value;
                    break;
                case 0x10:
                    index = (int)(long)value;
                    break;
                case 0x1A when value == (ulong)r.Remaining && value <= int.MaxValue:
                    dataAt = r.Consumed;
                    dataLength = (int)value;
                    return true;
                case 0x1A when value + 9 == (ulong)r.Remaining && value <= int.MaxValue:
                    dataAt = r.Consumed;
                    dataLength = (int)value;
                    r.Advance(dataLength);
                    if (r.TryRead(out byte last) && last == 0x21 && r.TryReadLittleEndian(out long sum))
                    {
                        checksum = (ulong)sum;
                        return true;
                    }

                    return false;
                default:
                    return false;
            }
        }

        return false;
    }

    private static bool TryVarint(ref SequenceReader<byte> r, out ulong value)
    {
        value = 0;
        for (int shift = 0; shift < 70; shift += 7)
        {
            if (!r.TryRead(out byte b))
            {
                return false;
            }

            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>
/// The k2rl.v1.Checkpoint service as this engine hosts it: the generated base's three methods, bound with
/// <see cref="CheckpointWire"/>'s methods (a bucket read straight into a pooled array) instead of the generated ones.
/// </summary>
[BindServiceMethod(typeof(CheckpointService), nameof(BindService))]
public abstract class CheckpointService
{
    public abstract Task<Wire.PushReply> Push(IAsyncStreamReader<Wire.WeightChunk> requestStream, ServerCallContext context);

    public abstract Task Fetch(Wire.FetchRequest request, IServerStreamWriter<Wire.WeightChunk> responseStream, ServerCallContext context);

    public abstract Task<Wire.CheckpointStatusReply> Status(Wire.CheckpointStatusRequest request, ServerCallContext context);

    /// <summary>Called by the gRPC host (ASP.NET Core finds it through the attribute).</summary>
    public static void BindService(ServiceBinderBase binder, CheckpointService? service) => CheckpointWire.Bind(binder, service);
}

/// <summary>
/// Arrays of exactly one bucket's size that a network receiver reads buckets into and hands back when the version they
/// belong to is superseded (or the bucket was refused), so that steady-state pushes allocate nothing. Idle arrays are
/// kept up to <see cref="MaxIdleBytes"/>; beyond that they go to the GC.
/// </summary>
internal static class BucketBuffers
{
    public const long MaxIdleBytes = 2L << 30;

    private static readonly ConcurrentDictionary<int, ConcurrentBag<byte[]>> Idle = new();
    private static long idleBytes;

    /// <summary>Lets the GC have every idle array (a process done with a buffer size: the bench between its cases).</summary>
    public static void Trim()
    {
        foreach (var bag in Idle.Values)
        {
            while (bag.TryTake(out var array))
            {
                Interlocked.Add(ref idleBytes, -array.Length);
            }
        }
    }

    public static byte[] Rent(int length)
    {
        if (Idle.TryGetValue(length, out var bag) && bag.TryTake(out var array))
        {
            Interlocked.Add(ref idleBytes, -length);
            return array;
        }

        return GC.AllocateUninitializedArray<byte>(length);
    }

    /// <summary>Hands back the array under <paramref name="data"/> (when it is a whole array no one reads any more).</summary>
    public static void Return(ByteString? data)
    {
        if (data is null || data.Length < 1 || !MemoryMarshal.TryGetArray(data.Memory, out var segment) || segment.Array is not { } array ||
            segment.Offset != 0 || segment.Count != array.Length)
        {
            return;
        }

        if (Interlocked.Add(ref idleBytes, array.Length) > MaxIdleBytes)
        {
            Interlocked.Add(ref idleBytes, -array.Length);
            return;
        }

        Idle.GetOrAdd(array.Length, _ => []).Add(array);
    }
}
