namespace K2RL.CheckpointEngine.Tests;

/// <summary>The shared-memory transport with its receivers in real child processes (<c>k2rl ckpt receive --shm</c>).</summary>
public sealed class SharedMemoryIntegrationTests : IDisposable
{
    private const int Tensors = 16, Size = 1000;
    private const long Cap = 12_000;
    private static readonly IReadOnlyList<TensorSpec> Layout = TensorSpec.Synthetic(Tensors, Size);
    private readonly string name = $"test-{Environment.ProcessId}-{Guid.NewGuid():N}"[..40];

    public void Dispose() => File.Delete(SharedMemoryLayout.PathOf(name));

    [Fact]
    public void AReceiverProcessTakesEachVersionAndALateOneFindsTheCurrent()
    {
        using var early = ChildReceiver.Start(Tensors, Size, "--shm", name);   // before the file exists
        using var publisher = new SharedMemoryWeightPublisher(name, Tensors * Size, Layout, WeightDtype.F32, Cap);
        var p1 = Weights.Random(Tensors * Size, 1);
        publisher.Publish(1, p1);
        Assert.Equal(Weights.Digest(p1), early.WaitForVersion(1));
        var p2 = Weights.Random(Tensors * Size, 2);
        publisher.Publish(2, p2);
        Assert.Equal(Weights.Digest(p2), early.WaitForVersion(2));

        using var late = ChildReceiver.Start(Tensors, Size, "--shm", name, "--until-version", "2");
        var (json, code) = late.Finish();
        Assert.Equal(0, code);
        Assert.Equal(2, json.GetProperty("held_version").GetInt64());
        Assert.Equal(Weights.Digest(p2), json.GetProperty("checksum").GetString());
        Assert.Equal(2, early.Finish().Json.GetProperty("held_version").GetInt64());
    }

    [Fact]
    public void Bf16HalvesTheBytesAndTheReceiverHoldsTheRoundedValues()
    {
        using var publisher = new SharedMemoryWeightPublisher(name, Tensors * Size, Layout, WeightDtype.Bf16, Cap);
        var p = Weights.Random(Tensors * Size, 3);
        publisher.Publish(1, p);
        using var child = ChildReceiver.Start(Tensors, Size, "--shm", name, "--until-version", "1");
        var (json, code) = child.Finish();
        Assert.Equal(0, code);
        Assert.Equal(Weights.Digest(Weights.RoundedToBf16(p)), json.GetProperty("checksum").GetString());
    }

    [Fact]
    public void APublisherThatDiesMidVersionLeavesReceiversOnTheLastCompleteOne()
    {
        using var publisher = new SharedMemoryWeightPublisher(name, Tensors * Size, Layout, WeightDtype.F32, Cap);
        var p1 = Weights.Random(Tensors * Size, 4);
        publisher.Publish(1, p1);
        publisher.Publish(2, Weights.Random(Tensors * Size, 5), stopAfterBuckets: 2);   // dies: half of version 2 in the back slot
        using var child = ChildReceiver.Start(Tensors, Size, "--shm", name, "--until-version", "2", "--timeout-s", "3");
        var (json, code) = child.Finish();
        Assert.Equal(1, code);
        Assert.Equal(1, json.GetProperty("held_version").GetInt64());
        Assert.Equal(Weights.Digest(p1), json.GetProperty("checksum").GetString());
        Assert.Contains("did not arrive", json.GetProperty("error").GetString());

        // A publisher that takes the file over carries on above the last complete version.
        using var next = new SharedMemoryWeightPublisher(name, Tensors * Size, Layout, WeightDtype.F32, Cap);
        Assert.Equal(1, next.LatestVersion);
    }

    [Fact]
    public void AManifestOfAnotherModelIsRefusedWithItsTensorNamed()
    {
        var other = TensorSpec.Synthetic(Tensors, Size).Select((t, i) => i == 7 ? t with { Name = "wrong.weight" } : t).ToList();
        using var publisher = new SharedMemoryWeightPublisher(name, Tensors * Size, other, WeightDtype.F32, Cap);
        publisher.Publish(1, Weights.Random(Tensors * Size, 6));
        using var child = ChildReceiver.Start(Tensors, Size, "--shm", name, "--until-version", "1", "--timeout-s", "3");
        var (json, code) = child.Finish();
        Assert.Equal(1, code);
        Assert.Equal(-1, json.GetProperty("held_version").GetInt64());
        Assert.Contains("missing t7", json.GetProperty("error").GetString());
    }

    [Fact]
    public void AFileThatIsNotOursIsAClearErrorAndTakesNothing()
    {
        File.WriteAllBytes(SharedMemoryLayout.PathOf(name), Enumerable.Range(0, 10_000).Select(i => (byte)(i * 31)).ToArray());
        using var receiver = new SharedMemoryWeightReceiver(name, Layout);
        Assert.False(receiver.TryReceive());
        Assert.Contains("is not a K2RL weights file", receiver.LastError);
        Assert.Equal(-1, receiver.HeldVersion);
    }
}
