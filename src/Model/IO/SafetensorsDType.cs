using System.Buffers.Binary;
using System.Runtime.InteropServices;
using K2RL.Kernels;

namespace K2RL.Model.IO;

/// <summary>
/// The element types K2RL reads into and writes from its fp32 buffers. The names are safetensors' own
/// ("F32", "BF16", "F16"); they are persisted, so they never change.
/// </summary>
public enum SafetensorsDType
{
    F32 = 0,
    BF16 = 1,
    F16 = 2,
}

/// <summary>Names, sizes and fp32 conversions of <see cref="SafetensorsDType"/>.</summary>
public static class SafetensorsDTypes
{
    /// <summary>Every dtype name the safetensors format defines; the ones not in <see cref="SafetensorsDType"/> are recognized but not loadable as weights.</summary>
    private static readonly HashSet<string> KnownNames = new(StringComparer.Ordinal)
    {
        "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2",
        "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64", "C64",
    };

    public static string Name(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F32 => "F32",
        SafetensorsDType.BF16 => "BF16",
        SafetensorsDType.F16 => "F16",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a safetensors dtype K2RL handles"),
    };

    public static int ElementSize(this SafetensorsDType dtype) => dtype == SafetensorsDType.F32 ? 4 : 2;

    /// <summary>Parses a header dtype; <paramref name="isKnown"/> tells a real but unsupported dtype from garbage.</summary>
    public static bool TryParse(string name, out SafetensorsDType dtype, out bool isKnown)
    {
        isKnown = KnownNames.Contains(name);
        switch (name)
        {
            case "F32":
                dtype = SafetensorsDType.F32;
                return true;
            case "BF16":
                dtype = SafetensorsDType.BF16;
                return true;
            case "F16":
                dtype = SafetensorsDType.F16;
                return true;
            default:
                dtype = default;
                return false;
        }
    }

    /// <summary>Parses the dtype names the CLI and configs accept ("f32", "bf16", "f16", any case).</summary>
    public static SafetensorsDType ParseOption(string name) =>
        TryParse(name.ToUpperInvariant(), out var d, out _)
            ? d
            : throw new K2RL.Common.ConfigException($"unknown weight dtype \"{name}\" (expected f32, bf16 or f16)");

    // ------------------------------------------------------------------ conversions

    /// <summary>bf16 bits → fp32 (exact); see <see cref="Bf16"/>.</summary>
    public static float Bf16ToFloat(ushort bits) => Bf16.ToFloat(bits);

    /// <summary>fp32 → bf16 bits, rounding to nearest even; see <see cref="Bf16"/>.</summary>
    public static ushort FloatToBf16(float value) => Bf16.FromFloat(value);

    /// <summary>IEEE half bits → fp32 (exact).</summary>
    public static float F16ToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>fp32 → IEEE half bits (round to nearest even; beyond ±65504 becomes ±infinity).</summary>
    public static ushort FloatToF16(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    /// <summary>
    /// Converts little-endian stored elements of <paramref name="dtype"/> to fp32. <paramref name="source"/>
    /// holds exactly <c>destination.Length</c> elements.
    /// </summary>
    public static void ToFloat(SafetensorsDType dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        switch (dtype)
        {
            case SafetensorsDType.F32:
                MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
                if (!BitConverter.IsLittleEndian)
                {
                    var ints = MemoryMarshal.Cast<float, int>(destination);
                    BinaryPrimitives.ReverseEndianness(ints, ints);
                }

                break;
            case SafetensorsDType.BF16:
                From16(source, destination, Bf16ToFloat);
                break;
            case SafetensorsDType.F16:
                From16(source, destination, F16ToFloat);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype));
        }
    }

    /// <summary>
    /// Converts fp32 to little-endian stored elements of <paramref name="dtype"/>; returns the index of the
    /// first value that does not fit the dtype's finite range (finite in, infinite out), or -1.
    /// </summary>
    public static int FromFloat(SafetensorsDType dtype, ReadOnlySpan<float> source, Span<byte> destination)
    {
        int overflow = -1;
        switch (dtype)
        {
            case SafetensorsDType.F32:
                MemoryMarshal.AsBytes(source).CopyTo(destination);
                if (!BitConverter.IsLittleEndian)
                {
                    var ints = MemoryMarshal.Cast<byte, int>(destination[..(4 * source.Length)]);
                    BinaryPrimitives.ReverseEndianness(ints, ints);
                }

                break;
            case SafetensorsDType.BF16:
                overflow = To16(source, destination, FloatToBf16, 0x7F80);
                break;
            case SafetensorsDType.F16:
                overflow = To16(source, destination, FloatToF16, 0x7C00);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype));
        }

        return overflow;
    }

    private static void From16(ReadOnlySpan<byte> source, Span<float> destination, Func<ushort, float> convert)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            destination[i] = convert(BinaryPrimitives.ReadUInt16LittleEndian(source.Slice(2 * i, 2)));
        }
    }

    /// <summary>Stores 16-bit values; returns the first finite input that became <paramref name="infinity"/> (sign aside), or -1.</summary>
    private static int To16(ReadOnlySpan<float> source, Span<byte> destination, Func<float, ushort> convert, ushort infinity)
    {
        int overflow = -1;
        for (int i = 0; i < source.Length; i++)
        {
            ushort bits = convert(source[i]);
            if (overflow < 0 && (bits & 0x7FFF) == infinity && float.IsFinite(source[i]))
            {
                overflow = i;
            }

            BinaryPrimitives.WriteUInt16LittleEndian(destination.Slice(2 * i, 2), bits);
        }

        return overflow;
    }
}
