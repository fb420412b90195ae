namespace K2RL.Kernels;

/// <summary>
/// bfloat16: the top 16 bits of an fp32 word (8-bit exponent, 7-bit mantissa). Widening is exact; narrowing
/// rounds to nearest even, and NaN stays a quiet NaN of the same sign.
/// </summary>
public static class Bf16
{
    public static float ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    public static ushort FromFloat(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x0040);
        }

        uint rounding = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + rounding) >> 16);
    }

    /// <summary>The nearest bf16 value, as fp32.</summary>
    public static float Round(float value) => ToFloat(FromFloat(value));

    /// <summary>Rounds every element to its nearest bf16 value in place.</summary>
    public static void Round(Span<float> values)
    {
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = Round(values[i]);
        }
    }
}
