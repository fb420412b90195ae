using K2RL.Common;

namespace K2RL.Rollout;

/// <summary>
/// A request's own random stream (a <see cref="SplitMix64"/>): one 64-bit state, advanced only by that request's
/// draws, so it can be saved with a paused rollout and restored exactly.
/// </summary>
public struct SamplerRng
{
    private SplitMix64 stream;

    public SamplerRng(ulong seed)
    {
        // Mix the seed so nearby seeds start far apart.
        stream = new SplitMix64(SplitMix64.Mix(seed ^ 0x6A09E667F3BCC909UL));
    }

    public ulong State
    {
        readonly get => stream.State;
        set => stream.State = value;
    }

    public static SamplerRng FromState(ulong state) => new() { State = state };

    public ulong NextUInt64() => stream.NextUInt64();

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => stream.NextDouble();
}
