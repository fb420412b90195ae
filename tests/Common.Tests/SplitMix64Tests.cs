namespace K2RL.Common.Tests;

/// <summary>
/// Every seeded stream in K2RL (tasks, sampling, weight init, the data mix) draws from <see cref="SplitMix64"/>:
/// its outputs are pinned to the published reference so a change to it cannot pass unnoticed.
/// </summary>
public sealed class SplitMix64Tests
{
    [Fact]
    public void SeedZeroGivesTheReferenceSequence()
    {
        // Vigna's splitmix64.c from state 0.
        var rng = new SplitMix64(0);
        Assert.Equal(0xE220A8397B1DCDAFUL, rng.NextUInt64());
        Assert.Equal(0x6E789E6AA1B965F4UL, rng.NextUInt64());
        Assert.Equal(0x06C45D188009454FUL, rng.NextUInt64());
        Assert.Equal(unchecked(3 * SplitMix64.Golden), rng.State);
    }

    [Fact]
    public void ARestoredStateContinuesTheStream()
    {
        var a = new SplitMix64(42);
        a.NextUInt64();
        var b = new SplitMix64(a.State);
        Assert.Equal(a.NextUInt64(), b.NextUInt64());
        Assert.Equal(unchecked(42 + 2 * SplitMix64.Golden), b.State);
    }
}
