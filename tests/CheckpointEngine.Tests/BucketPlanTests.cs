namespace K2RL.CheckpointEngine.Tests;

public sealed class BucketPlanTests
{
    private const long MiB = 1 << 20;

    [Fact]
    public void BucketSizeIsTheCapBoundedByAThirdOfFreeMemoryButNeverBelowTheLargestTensor()
    {
        Assert.Equal((8 * MiB, true), BucketPlan.Size(8 * MiB, 1 * MiB, 300 * MiB));     // the cap
        Assert.Equal((20 * MiB, true), BucketPlan.Size(8 * MiB, 20 * MiB, 300 * MiB));   // the largest tensor
        Assert.Equal((10 * MiB, true), BucketPlan.Size(64 * MiB, 1 * MiB, 30 * MiB));    // free / 3: two in flight + one loading
        Assert.Equal((12 * MiB, false), BucketPlan.Size(8 * MiB, 12 * MiB, 30 * MiB));   // above a third: one at a time (up to free / 2)
        var e = Assert.Throws<WeightTransferException>(() => BucketPlan.Size(8 * MiB, 16 * MiB, 30 * MiB));
        Assert.Contains("largest tensor", e.Message);
    }

    [Fact]
    public void BucketsTileTheBufferWithWholeTensorsUpToTheSize()
    {
        // tensors of 3, 5, 2, 9, 1 elements with padding to multiples of 4
        var tensors = new List<TensorSpec>();
        long offset = 0;
        foreach (int len in new[] { 3, 5, 2, 9, 1 })
        {
            tensors.Add(new TensorSpec($"t{tensors.Count}", [len], offset));
            offset += (len + 3) / 4 * 4;
        }

        var buckets = BucketPlan.Plan(tensors, offset, 8);
        Assert.Equal(0, buckets[0].Offset);
        Assert.Equal(offset, buckets[^1].End);
        for (int i = 1; i < buckets.Count; i++)
        {
            Assert.Equal(buckets[i - 1].End, buckets[i].Offset);
        }

        foreach (var t in tensors)
        {
            Assert.Single(buckets, b => b.Offset <= t.Offset && t.End <= b.End);   // never split
        }

        // at most the size, except a bucket holding one tensor larger than it
        Assert.All(buckets, b => Assert.True(b.Count <= 8 || tensors.Count(t => t.Offset >= b.Offset && t.Offset < b.End) == 1));
        Assert.Single(BucketPlan.Plan(tensors, offset, 1000));
    }

    [Fact]
    public void AManifestThatDoesNotTileItsBufferIsRefused()
    {
        var tensors = TensorSpec.Synthetic(2, 4);
        var good = new WeightManifest(1, 8, WeightDtype.F32, tensors, [new BucketSpec(0, 4, 0), new BucketSpec(4, 4, 0)]);
        good.Check();
        Assert.Contains("bucket 1", Assert.Throws<WeightTransferException>(() => (good with { Buckets = [new BucketSpec(0, 4, 0), new BucketSpec(5, 3, 0)] }).Check()).Message);
        Assert.Contains("cover", Assert.Throws<WeightTransferException>(() => (good with { Buckets = [new BucketSpec(0, 4, 0)] }).Check()).Message);
        Assert.Contains("t1", Assert.Throws<WeightTransferException>(() => (good with { ParameterCount = 7, Buckets = [new BucketSpec(0, 7, 0)] }).Check()).Message);
        Assert.Contains("unknown dtype", Assert.Throws<WeightTransferException>(() => (good with { Dtype = (WeightDtype)7 }).Check()).Message);
    }
}
