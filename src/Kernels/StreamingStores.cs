using System.Buffers;
using System.IO.MemoryMappedFiles;
using System.Runtime.Intrinsics;

namespace K2RL.Kernels;

/// <summary>
/// Bulk writes for the checkpoint engine with streaming (non-temporal) stores into 32-byte aligned lines, so a bucket
/// written into a staging buffer or a shared-memory slot does not evict the caches; the pointer work lives here, in the
/// one unsafe project. The copies that also checksum what they move are <see cref="WordChecksum"/>'s.
/// </summary>
public static class StreamingStores
{
    /// <summary>Below this many bytes a plain copy is as fast.</summary>
    public const int StreamingMinBytes = 4096;

    // bf16 → fp32 (exact: the bits shifted up), the fp32 written with streaming stores into 32-byte aligned lines.
    public static unsafe void WidenBf16(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        fixed (ushort* s = src)
        fixed (float* d = dst)
        {
            int n = src.Length, i = 0;
            for (; i < n && ((long)(d + i) & 31) != 0; i++)
            {
                d[i] = BitConverter.Int32BitsToSingle(s[i] << 16);
            }

            uint* u = (uint*)d;
            for (; i + 16 <= n; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(s + i));
                Vector256.StoreAlignedNonTemporal(Vector256.ShiftLeft(lo, 16), u + i);
                Vector256.StoreAlignedNonTemporal(Vector256.ShiftLeft(hi, 16), u + i + 8);
            }

            for (; i < n; i++)
            {
                d[i] = BitConverter.Int32BitsToSingle(s[i] << 16);
            }
        }
    }
}

/// <summary>A <see cref="Memory{T}"/> over a span the caller keeps pinned for the whole call (see <see cref="Run"/>).</summary>
public sealed unsafe class PinnedMemory<T> : MemoryManager<T> where T : unmanaged
{
    private readonly T* start;
    private readonly int length;

    private PinnedMemory(T* start, int length)
    {
        this.start = start;
        this.length = length;
    }

    /// <summary>Pins <paramref name="span"/> and hands <paramref name="body"/> a memory over it, valid until the body returns.</summary>
    public static TResult Run<TResult>(ReadOnlySpan<T> span, Func<ReadOnlyMemory<T>, TResult> body)
    {
        fixed (T* p = span)
        {
            using var pinned = new PinnedMemory<T>(p, span.Length);
            return body(pinned.Memory);
        }
    }

    public override Span<T> GetSpan() => new(start, length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(start + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
    }
}

/// <summary>Spans straight over a memory-mapped view (no stream, no copy between); the pointer is held until disposed.</summary>
public sealed unsafe class MappedSpans : IDisposable
{
    private readonly MemoryMappedViewAccessor view;
    private readonly byte* start;
    private readonly long capacity;

    public MappedSpans(MemoryMappedViewAccessor view)
    {
        this.view = view;
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        start = p + view.PointerOffset;
        capacity = view.Capacity;
    }

    public ReadOnlySpan<byte> Span(long at, int length) => new(start + Check(at, length), length);

    public Span<byte> WritableSpan(long at, int length) => new(start + Check(at, length), length);

    private long Check(long at, int length) =>
        at >= 0 && length >= 0 && at + length <= capacity ? at : throw new ArgumentOutOfRangeException(nameof(at), $"[{at}, {at + length}) is outside the mapping's {capacity} bytes");

    public void Dispose() => view.SafeMemoryMappedViewHandle.ReleasePointer();
}
