using System.IO.Hashing;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace K2RL.CheckpointEngine;

/// <summary>
/// The bytes of a bucket on the wire: fp32 as is, or bf16 (the top 16 bits of each fp32, rounded to nearest even, NaN
/// kept a quiet NaN of its sign: the rounding of <c>K2RL.Kernels.Bf16</c>, which is scalar; this one is vectorized with
/// <see cref="Vector{T}"/>, and the tests hold it bit-exact to that oracle). Checksums are XxHash3 (64-bit): it hashes at
/// memory speed, so verifying a bucket costs a fraction of moving it, and a 64-bit digest makes an undetected corrupted
/// bucket a 2⁻⁶⁴ event (CRC-32C would be as fast with hardware support, but 32 bits).
/// Little-endian hosts only (every supported one).
/// </summary>
public static class WireCodec
{
    /// <summary>Below this a streaming copy is a plain one (the aligned head and tail would dominate).</summary>
    private const int StreamingMinBytes = 4096;

    public static ulong Checksum(ReadOnlySpan<byte> bytes) => XxHash3.HashToUInt64(bytes);

    /// <summary>Writes <paramref name="values"/> in <paramref name="dtype"/> to <paramref name="dst"/> (values · size bytes).</summary>
    public static void Encode(ReadOnlySpan<float> values, WeightDtype dtype, Span<byte> dst)
    {
        if (dst.Length != values.Length * dtype.Size())
        {
            throw new ArgumentException($"{dtype.Name()} encoding of {values.Length} values needs {values.Length * dtype.Size()} bytes, got {dst.Length}");
        }

        if (dtype == WeightDtype.F32)
        {
            MemoryMarshal.AsBytes(values).CopyTo(dst);
        }
        else
        {
            ToBf16(values, MemoryMarshal.Cast<byte, ushort>(dst));
        }
    }

    /// <summary>Reads <paramref name="src"/> (in <paramref name="dtype"/>) into fp32 <paramref name="values"/>.</summary>
    public static void Decode(ReadOnlySpan<byte> src, WeightDtype dtype, Span<float> values)
    {
        if (src.Length != values.Length * dtype.Size())
        {
            throw new ArgumentException($"{dtype.Name()} decoding of {values.Length} values needs {values.Length * dtype.Size()} bytes, got {src.Length}");
        }

        if (dtype == WeightDtype.F32)
        {
            src.CopyTo(MemoryMarshal.AsBytes(values));
        }
        else
        {
            FromBf16(MemoryMarshal.Cast<byte, ushort>(src), values);
        }
    }

    /// <summary>
    /// As <see cref="Decode"/>, writing <paramref name="values"/> with streaming (non-temporal) stores where the target
    /// is large: the receiver's staging buffer is not read again soon, so its lines need not be read for ownership nor
    /// kept in cache. Call <see cref="FenceStreamingStores"/> before another thread may read the values.
    /// </summary>
    public static void DecodeStreaming(ReadOnlySpan<byte> src, WeightDtype dtype, Span<float> values)
    {
        if (dtype == WeightDtype.F32 && src.Length == values.Length * sizeof(float))
        {
            CopyStreaming(src, MemoryMarshal.AsBytes(values));
        }
        else if (dtype == WeightDtype.Bf16 && src.Length == values.Length * 2 && Vector256.IsHardwareAccelerated && values.Length >= StreamingMinBytes)
        {
            WidenStreaming(MemoryMarshal.Cast<byte, ushort>(src), values);
        }
        else
        {
            Decode(src, dtype, values);
        }
    }

    // bf16 → fp32 (exact: the bits shifted up), the fp32 written with streaming stores into 32-byte aligned lines.
    private static unsafe void WidenStreaming(ReadOnlySpan<ushort> src, Span<float> dst)
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

    /// <summary>Copies <paramref name="src"/> to <paramref name="dst"/> (same length, not overlapping) with streaming stores
    /// into 32-byte aligned lines of the target when the platform has them and the copy is large; else a plain copy.</summary>
    public static unsafe void CopyStreaming(ReadOnlySpan<byte> src, Span<byte> dst)
    {
        if (src.Length != dst.Length)
        {
            throw new ArgumentException($"streaming copy of {src.Length} bytes into {dst.Length}");
        }

        if (!Vector256.IsHardwareAccelerated || src.Length < StreamingMinBytes)
        {
            src.CopyTo(dst);
            return;
        }

        fixed (byte* s = src, d = dst)
        {
            long n = src.Length, head = Math.Min(n, (32 - ((long)d & 31)) & 31), i = head;
            new ReadOnlySpan<byte>(s, (int)head).CopyTo(new Span<byte>(d, (int)head));
            for (; i + 128 <= n; i += 128)
            {
                var a = Vector256.Load(s + i);
                var b = Vector256.Load(s + i + 32);
                var c = Vector256.Load(s + i + 64);
                var e = Vector256.Load(s + i + 96);
                Vector256.StoreAlignedNonTemporal(a, d + i);
                Vector256.StoreAlignedNonTemporal(b, d + i + 32);
                Vector256.StoreAlignedNonTemporal(c, d + i + 64);
                Vector256.StoreAlignedNonTemporal(e, d + i + 96);
            }

            new ReadOnlySpan<byte>(s + i, (int)(n - i)).CopyTo(new Span<byte>(d + i, (int)(n - i)));
        }
    }

    /// <summary>Orders the streaming stores made so far before any later store (x86's sfence; a no-op elsewhere).</summary>
    public static void FenceStreamingStores()
    {
        if (Sse.IsSupported)
        {
            Sse.StoreFence();
        }
        else
        {
            Interlocked.MemoryBarrier();
        }
    }

    /// <summary>fp32 → bf16, round to nearest even; NaN stays a quiet NaN.</summary>
    public static void ToBf16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        int n = src.Length, w = Vector<uint>.Count, i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var lsb = Vector<uint>.One;
            var bias = new Vector<uint>(0x7FFFu);
            var quiet = new Vector<uint>(0x0040u);
            for (; i <= n - 2 * w; i += 2 * w)
            {
                var a = Round(new Vector<float>(src.Slice(i)), lsb, bias, quiet);
                var b = Round(new Vector<float>(src.Slice(i + w)), lsb, bias, quiet);
                Vector.Narrow(a, b).CopyTo(dst.Slice(i));
            }
        }

        for (; i < n; i++)
        {
            dst[i] = ToBf16(src[i]);
        }
    }

    /// <summary>bf16 → fp32, exact.</summary>
    public static void FromBf16(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        int n = src.Length, w = Vector<ushort>.Count, i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var uints = MemoryMarshal.Cast<float, uint>(dst);
            for (; i <= n - w; i += w)
            {
                Vector.Widen(new Vector<ushort>(src.Slice(i)), out var lo, out var hi);
                Vector.ShiftLeft(lo, 16).CopyTo(uints.Slice(i));
                Vector.ShiftLeft(hi, 16).CopyTo(uints.Slice(i + w / 2));
            }
        }

        for (; i < n; i++)
        {
            dst[i] = BitConverter.Int32BitsToSingle(src[i] << 16);
        }
    }

    public static ushort ToBf16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x0040);
        }

        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
    }

    private static Vector<uint> Round(Vector<float> v, Vector<uint> lsb, Vector<uint> bias, Vector<uint> quiet)
    {
        var bits = Vector.AsVectorUInt32(v);
        var rounded = Vector.ShiftRightLogical(bits + bias + (Vector.ShiftRightLogical(bits, 16) & lsb), 16);
        var nan = Vector.AsVectorUInt32(~Vector.Equals(v, v));
        return Vector.ConditionalSelect(nan, Vector.ShiftRightLogical(bits, 16) | quiet, rounded);
    }
}
