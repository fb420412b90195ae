using K2RL.Kernels;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace K2RL.CheckpointEngine;

/// <summary>
/// The bytes of a bucket on the wire: fp32 as is, or bf16 (the top 16 bits of each fp32, rounded to nearest even, NaN
/// kept a quiet NaN of its sign: the rounding of <c>K2RL.Kernels.Bf16</c>, which is scalar; this one is vectorized with
/// <see cref="Vector{T}"/>, and the tests hold it bit-exact to that oracle). Checksums are <see cref="WordChecksum"/>
/// (64-bit, named in every manifest): position-weighted word sums that the copy moving a bucket computes in the same
/// pass, so verifying costs no second read; a one- or two-word corruption always changes the sums it mixes.
/// Little-endian hosts only (every supported one).
/// </summary>
public static class WireCodec
{
    public static ulong Checksum(ReadOnlySpan<byte> bytes) => WordChecksum.Of(bytes);

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
