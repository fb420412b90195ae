namespace K2RL.CheckpointEngine.Tests;

public sealed class WeightAssemblerTests
{
    private static readonly IReadOnlyList<TensorSpec> Layout = TensorSpec.Synthetic(16, 1000);   // 16 000 floats
    private const long Cap = 12_000;   // bytes: 3 f32 tensors or 6 bf16 tensors a bucket

    [Theory]
    [InlineData(WeightDtype.F32)]
    [InlineData(WeightDtype.Bf16)]
    public void BucketsInAnyOrderMakeTheVersionAndNothingIsPublishedBeforeTheLast(WeightDtype dtype)
    {
        var p = Weights.Random(16_000, 1);
        var v = EncodedVersion.Encode(1, p, Layout, dtype, Cap);
        Assert.True(v.BucketCount > 2);
        var assembler = new WeightAssembler(Layout);
        var order = Enumerable.Range(0, v.BucketCount).Reverse().ToList();
        assembler.Begin(v.Manifest);
        foreach (int i in order.SkipLast(1))
        {
            Assert.Equal(BucketResult.Taken, assembler.Accept(1, i, v.Bucket(i).Span));
            Assert.Null(assembler.TryComplete());
            Assert.False(assembler.Slot.TryGetNewer(-1, out _));
        }

        Assert.Equal([order[^1]], assembler.Missing);
        Assert.Equal(BucketResult.Taken, assembler.Accept(1, order[^1], v.Bucket(order[^1]).Span));
        Assert.Equal(BucketResult.Duplicate, assembler.Accept(1, order[^1], v.Bucket(order[^1]).Span));
        var done = assembler.TryComplete();
        Assert.NotNull(done);
        Assert.Equal(dtype == WeightDtype.F32 ? p : Weights.RoundedToBf16(p), done.Parameters);
        Assert.Equal(dtype.Size() * 16_000L, v.Manifest.TotalBytes);   // bf16 moves half the bytes
    }

    [Fact]
    public void ACorruptOrTruncatedBucketIsRefusedAndTheSameBucketCanBeTakenAgain()
    {
        var p = Weights.Random(16_000, 2);
        var v = EncodedVersion.Encode(3, p, Layout, WeightDtype.F32, Cap);
        var assembler = new WeightAssembler(Layout);
        assembler.Begin(v.Manifest);
        var bad = v.Bucket(1).ToArray();
        bad[17] ^= 1;
        Assert.Equal(BucketResult.Corrupt, assembler.Accept(3, 1, bad));
        Assert.Equal(BucketResult.Corrupt, assembler.Accept(3, 1, v.Bucket(1).Span[..^4]));
        Assert.Contains(1, assembler.Missing);
        for (int i = 0; i < v.BucketCount; i++)
        {
            Assert.Equal(BucketResult.Taken, assembler.Accept(3, i, v.Bucket(i).Span));
        }

        Assert.Equal(p, assembler.TryComplete()!.Parameters);
    }

    [Fact]
    public void AManifestThatDoesNotMatchTheModelIsRefusedByNameAndTheHeldVersionStays()
    {
        var assembler = new WeightAssembler(Layout);
        Weights.Feed(assembler, EncodedVersion.Encode(1, Weights.Random(16_000, 3), Layout, WeightDtype.F32, Cap));
        var held = assembler.TryComplete()!;

        var renamed = Layout.Select((t, i) => i == 5 ? t with { Name = "t5x" } : t).ToList();
        var e = Assert.Throws<WeightTransferException>(() => assembler.Begin(EncodedVersion.Encode(2, new float[16_000], renamed, WeightDtype.F32, Cap).Manifest));
        Assert.Contains("missing t5", e.Message);
        Assert.Contains("unknown t5x", e.Message);

        var reshaped = Layout.Select((t, i) => i == 2 ? t with { Shape = [10, 100] } : t).ToList();
        e = Assert.Throws<WeightTransferException>(() => assembler.Begin(EncodedVersion.Encode(2, new float[16_000], reshaped, WeightDtype.F32, Cap).Manifest));
        Assert.Contains("t2 is [10, 100]", e.Message);

        e = Assert.Throws<WeightTransferException>(() => assembler.Begin(EncodedVersion.Encode(1, new float[16_000], Layout, WeightDtype.F32, Cap).Manifest));
        Assert.Contains("not newer than the held version 1", e.Message);

        Assert.Null(assembler.Pending);
        Assert.True(assembler.Slot.TryGetNewer(0, out var still));
        Assert.Same(held, still);
    }

    [Fact]
    public void ABucketBeyondTheManifestOrOfAnotherVersionIsAnError()
    {
        var v = EncodedVersion.Encode(4, Weights.Random(16_000, 4), Layout, WeightDtype.F32, Cap);
        var assembler = new WeightAssembler(Layout);
        Assert.Contains("no version is in progress", Assert.Throws<WeightTransferException>(() => assembler.Accept(4, 0, v.Bucket(0).Span)).Message);
        assembler.Begin(v.Manifest);
        Assert.Contains($"beyond the manifest's {v.BucketCount} buckets", Assert.Throws<WeightTransferException>(() => assembler.Accept(4, v.BucketCount, v.Bucket(0).Span)).Message);
        Assert.Contains("version 4 is in progress", Assert.Throws<WeightTransferException>(() => assembler.Accept(5, 0, v.Bucket(0).Span)).Message);
    }

    [Fact]
    public void AnAbandonedVersionLeavesTheLastCompleteOneAndANewerOneReplacesAnUnfinishedOne()
    {
        var assembler = new WeightAssembler(Layout);
        var p1 = Weights.Random(16_000, 5);
        Weights.Feed(assembler, EncodedVersion.Encode(1, p1, Layout, WeightDtype.F32, Cap));
        assembler.TryComplete();
        var v2 = EncodedVersion.Encode(2, Weights.Random(16_000, 6), Layout, WeightDtype.F32, Cap);
        assembler.Begin(v2.Manifest);
        assembler.Accept(2, 0, v2.Bucket(0).Span);
        assembler.Abandon();   // its sender died
        Assert.Equal(1, assembler.HeldVersion);
        Assert.True(assembler.Slot.TryGetNewer(0, out var w));
        Assert.Equal(p1, w!.Parameters);

        assembler.Begin(v2.Manifest);
        assembler.Accept(2, 0, v2.Bucket(0).Span);
        var p3 = Weights.Random(16_000, 7);
        Weights.Feed(assembler, EncodedVersion.Encode(3, p3, Layout, WeightDtype.F32, Cap));
        Assert.Equal(p3, assembler.TryComplete()!.Parameters);
        Assert.Contains("not newer", Assert.Throws<WeightTransferException>(() => assembler.Begin(v2.Manifest)).Message);
    }

    [Fact]
    public void AShardReceiverCopiesOutOnlyItsTensorsIntoItsOwnLayout()
    {
        var p = Weights.Random(16_000, 8);
        var v = EncodedVersion.Encode(1, p, Layout, WeightDtype.F32, Cap);
        // holds t3 and t11, packed at the start of its own buffer in the other order
        var mine = new List<TensorSpec> { new("t11", [1000], 0), new("t3", [1000], 1000) };
        var strict = new WeightAssembler(mine);
        Assert.Contains("unknown t0", Assert.Throws<WeightTransferException>(() => strict.Begin(v.Manifest)).Message);
        var shard = new WeightAssembler(mine, shard: true);
        Weights.Feed(shard, v);
        var got = shard.TryComplete()!.Parameters;
        Assert.Equal(p.AsSpan(11_000, 1000).ToArray(), got.AsSpan(0, 1000).ToArray());
        Assert.Equal(p.AsSpan(3_000, 1000).ToArray(), got.AsSpan(1000, 1000).ToArray());
    }

    [Fact]
    public void AnUnknownDtypeOnTheWireIsRefused()
    {
        var wire = EncodedVersion.Encode(1, Weights.Random(16_000, 9), Layout, WeightDtype.F32, Cap).Manifest.ToWire();
        foreach (var t in wire.Tensors)
        {
            t.Dtype = (K2RL.Protos.V1.WeightDtype)9;
        }

        Assert.Contains("unknown", Assert.Throws<WeightTransferException>(() => WeightManifest.FromWire(wire)).Message);
        wire.Tensors[0].Dtype = K2RL.Protos.V1.WeightDtype.F32;
        Assert.Contains("tensor t1", Assert.Throws<WeightTransferException>(() => WeightManifest.FromWire(wire)).Message);
    }

    [Fact]
    public void AManifestWhoseChecksumsAreOfAnotherKindIsRefusedByName()
    {
        var wire = EncodedVersion.Encode(1, Weights.Random(16_000, 9), Layout, WeightDtype.F32, Cap).Manifest.ToWire();
        Assert.Equal("k2-wsum64", wire.ChecksumKind);
        wire.ChecksumKind = "";   // what a sender from before the kind was named sends: XxHash3 checksums
        Assert.Contains("XxHash3", Assert.Throws<WeightTransferException>(() => WeightManifest.FromWire(wire)).Message);
        wire.ChecksumKind = "crc32c";
        string message = Assert.Throws<WeightTransferException>(() => WeightManifest.FromWire(wire)).Message;
        Assert.Contains("\"crc32c\"", message);
        Assert.Contains("k2-wsum64 only", message);
    }

    [Fact]
    public void TheSameManifestAgainContinuesAVersionAndAnotherPlanOfItStartsOver()
    {
        var p = Weights.Random(16_000, 10);
        var v = EncodedVersion.Encode(2, p, Layout, WeightDtype.F32, Cap);
        var assembler = new WeightAssembler(Layout);
        Assert.False(assembler.Begin(v.Manifest));
        assembler.Accept(2, 0, v.Bucket(0).Span);
        Assert.True(assembler.Begin(v.Manifest));   // a repair: bucket 0 stays taken
        Assert.DoesNotContain(0, assembler.Missing);
        var replanned = EncodedVersion.Encode(2, p, Layout, WeightDtype.F32, 2 * Cap);   // the sender restarted
        Assert.False(assembler.Begin(replanned.Manifest));
        Assert.Equal(replanned.BucketCount, assembler.Missing.Count);
        Weights.Feed(assembler, replanned);
        Assert.Equal(p, assembler.TryComplete()!.Parameters);
    }

    [Theory]
    [InlineData(WeightDtype.F32, false)]   // streamed into the staging buffer by the loop that sums it
    [InlineData(WeightDtype.Bf16, false)]  // widened by that loop
    [InlineData(WeightDtype.F32, true)]    // a shard: its tensors copied and summed, the others summed alone
    [InlineData(WeightDtype.Bf16, true)]
    public void ABucketCorruptPastWhatWasCopiedOutIsRefusedAndTakenAgainCleanly(WeightDtype dtype, bool shard)
    {
        var layout = TensorSpec.Synthetic(4, 100_000);   // buckets of 400 KB f32
        var p = Weights.Random(400_000, 12);
        var v = EncodedVersion.Encode(1, p, layout, dtype, 500_000);
        var model = shard ? [new TensorSpec("t2", [100_000], 0)] : layout;
        var assembler = new WeightAssembler(model, shard: shard);
        assembler.Begin(v.Manifest);
        for (int i = 0; i < v.BucketCount; i++)
        {
            var good = v.Bucket(i).Span;
            var torn = good.ToArray();
            torn[(torn.Length * 3 / 4) + 1] ^= 0x20;   // a torn last quarter: the rest was already copied out
            Assert.Equal(BucketResult.Corrupt, assembler.Accept(1, i, torn));
            Assert.Equal(BucketResult.Taken, assembler.Accept(1, i, good));
        }

        var got = assembler.TryComplete()!.Parameters;
        var want = dtype == WeightDtype.F32 ? p : Weights.RoundedToBf16(p);
        Assert.Equal(shard ? want.AsSpan(200_000, 100_000).ToArray() : want, got);
    }

    [Fact]
    public void AStreamedVersionsBucketsCarryTheirChecksumsAndARepairWithTheFullManifestContinuesIt()
    {
        var p = Weights.Random(16_000, 7);
        var streamed = new StreamedVersion(5, p, Layout, WeightDtype.F32, Cap, reuse: null);
        Assert.All(streamed.Manifest.Buckets, b => Assert.Equal(0ul, b.Checksum));   // the manifest leaves first
        var assembler = new WeightAssembler(Layout);
        assembler.Begin(streamed.Manifest);
        var (data, checksum) = streamed.Bucket(0);
        Assert.Contains("carries no checksum", Assert.Throws<WeightTransferException>(() => assembler.Accept(5, 0, data.Span)).Message);
        Assert.Equal(BucketResult.Corrupt, assembler.Accept(5, 0, data.Span, checksum ^ 1));
        Assert.Equal(BucketResult.Taken, assembler.Accept(5, 0, data.Span, checksum));

        // The rest comes as a repair from a holder: the complete manifest (checksums filled) continues the version.
        var full = streamed.Finish();
        Assert.Equal(EncodedVersion.Encode(5, p, Layout, WeightDtype.F32, Cap).Manifest.Buckets, full.Manifest.Buckets);
        Assert.True(assembler.Begin(full.Manifest));
        Assert.Equal(full.BucketCount - 1, assembler.Missing.Count);
        var bad = full.Bucket(1).ToArray();
        bad[0] ^= 1;
        Assert.Equal(BucketResult.Corrupt, assembler.Accept(5, 1, bad, carried: 0));   // against the manifest's, not a carried one
        for (int i = 1; i < full.BucketCount; i++)
        {
            Assert.Equal(BucketResult.Taken, assembler.Accept(5, i, full.Bucket(i).Span));
        }

        Assert.Equal(p, assembler.TryComplete()!.Parameters);
        Assert.Equal(full.Manifest.Buckets, assembler.LastCompleted!.Buckets);   // what this holder serves on
    }
}
