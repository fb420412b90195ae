namespace K2RL.CheckpointEngine.Tests;

public sealed class InProcessWeightChannelTests
{
    [Fact]
    public void VersionsAreMonotonicAndTheBufferIsTheCallersNoLonger()
    {
        var channel = new InProcessWeightChannel();
        float[] p = [1, 2, 3];
        channel.Publish(1, p);
        p[0] = 9;
        Assert.True(channel.TryGetNewer(0, out var w));
        Assert.Equal([1f, 2, 3], w!.Parameters);
        Assert.False(channel.TryGetNewer(1, out _));
        Assert.Contains("not above", Assert.Throws<WeightTransferException>(() => channel.Publish(1, p)).Message);
    }

    [Fact]
    public void ABufferIsReusedOnlyOnceItsReadersReleasedIt()
    {
        var channel = new InProcessWeightChannel();
        channel.Publish(1, [1f, 1]);
        Assert.True(channel.TryGetNewer(0, out var held));   // a reader still copying version 1
        channel.Publish(2, [2f, 2]);
        channel.Publish(3, [3f, 3]);
        channel.Publish(4, [4f, 4]);
        Assert.Equal([1f, 1], held!.Parameters);              // never overwritten while held
        channel.Release(held);
        Assert.True(channel.TryGetNewer(3, out var w4));
        Assert.Equal([4f, 4], w4!.Parameters);
        channel.Release(w4);
        channel.Publish(5, [5f, 5]);
        Assert.True(channel.TryGetNewer(4, out var w5));
        Assert.Same(held.Parameters, w5!.Parameters);         // released, and the oldest spare: reused
        Assert.Equal([5f, 5], w5.Parameters);
    }

    [Fact]
    public void ABf16ChannelDeliversTheRoundedValues()
    {
        var p = Weights.Random(1000, 11);
        var channel = new InProcessWeightChannel(WeightDtype.Bf16);
        channel.Publish(1, p);
        Assert.True(channel.TryGetNewer(0, out var w));
        Assert.Equal(Weights.RoundedToBf16(p), w!.Parameters);
    }
}
