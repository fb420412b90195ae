namespace K2RL.Common;

/// <summary>
/// SplitMix64 (Steele, Lea and Flood, 2014): one 64-bit state advanced by the golden-ratio increment, each output
/// the state passed through <see cref="Mix"/>. Small, fast, and the same on every platform and .NET version, so
/// a seed names one stream forever. The one home of the generator: the Gym's <c>GymRandom</c>, the sampler's
/// <c>SamplerRng</c>, weight initialization and the data mix's hashes all draw from it; changing it changes every
/// seeded result, so its outputs are pinned by a test.
/// </summary>
public struct SplitMix64(ulong state)
{
    /// <summary>The increment, 2^64 / φ rounded to odd.</summary>
    public const ulong Golden = 0x9E3779B97F4A7C15UL;

    /// <summary>The whole state: save it to resume the stream exactly.</summary>
    public ulong State { get; set; } = state;

    public ulong NextUInt64()
    {
        State += Golden;
        return Mix(State);
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>The output function (a variant of MurmurHash3's finalizer): a bijection that spreads every input bit.</summary>
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
