using Google.Protobuf;
using Grpc.Core;
using K2RL.Common.Rpc;
using Wire = K2RL.Protos.V1;

namespace K2RL.CheckpointEngine.Tests;

/// <summary>The network transport with its receivers in real child processes (<c>k2rl ckpt receive --listen</c>).</summary>
public sealed class NetworkIntegrationTests
{
    private const int Tensors = 16, Size = 1000;
    private const long Cap = 12_000;
    private static readonly IReadOnlyList<TensorSpec> Layout = TensorSpec.Synthetic(Tensors, Size);

    [Fact]
    public async Task AChainOfReceiverProcessesHoldsEveryVersionRepairsCorruptBucketsAndServesLateJoiners()
    {
        var children = Enumerable.Range(0, 3).Select(_ => ChildReceiver.Start(Tensors, Size, "--listen", "127.0.0.1:0")).ToList();
        try
        {
            var addresses = children.Select(c => c.Address()).ToList();
            // Bucket 1 is corrupted on the trainer's link the first time: the head refuses it, asks again, and relays the good one.
            using var publisher = new NetworkWeightPublisher(addresses, Tensors * Size, Layout, new NetworkPublisherOptions
            {
                BucketCapBytes = Cap,
                Tamper = (attempt, bucket, data) => attempt == 0 && bucket == 1 ? Flip(data) : data,
            });
            var p1 = Weights.Random(Tensors * Size, 1);
            await Task.Run(() => publisher.Publish(1, p1));
            Assert.Empty(publisher.LastFailures);
            Assert.All(children, c => Assert.Equal(Weights.Digest(p1), c.WaitForVersion(1)));

            using var bf16 = new NetworkWeightPublisher(addresses, Tensors * Size, Layout, new NetworkPublisherOptions { Dtype = WeightDtype.Bf16, BucketCapBytes = Cap });
            var p2 = Weights.Random(Tensors * Size, 2);
            await Task.Run(() => bf16.Publish(2, p2));
            string rounded = Weights.Digest(Weights.RoundedToBf16(p2));
            Assert.All(children, c => Assert.Equal(rounded, c.WaitForVersion(2)));

            // A receiver that joins late (or restarts) gets the current version from a peer, alone.
            using (var late = ChildReceiver.Start(Tensors, Size, "--listen", "127.0.0.1:0", "--peer", addresses[2].ToString(), "--until-version", "2"))
            {
                var (json, code) = late.Finish();
                Assert.Equal(0, code);
                Assert.Equal(rounded, json.GetProperty("checksum").GetString());
            }

            // The middle hop dies: the chain is cut, the publisher reaches the last receiver directly and names the dead one.
            children[1].Kill();
            var p3 = Weights.Random(Tensors * Size, 3);
            await Task.Run(() => publisher.Publish(3, p3));
            Assert.Contains(addresses[1].ToString(), Assert.Single(publisher.LastFailures));
            Assert.Equal(Weights.Digest(p3), children[0].WaitForVersion(3));
            Assert.Equal(Weights.Digest(p3), children[2].WaitForVersion(3));

            var head = children[0].Finish();
            Assert.Equal(0, head.ExitCode);
            Assert.Equal(2, head.Json.GetProperty("refetched").GetInt64());   // the corrupted bucket, once in each of versions 1 and 3
            // every push came over the data lane: versions 1 and 3 twice (the repair of the corrupted bucket), version 2 once
            Assert.Equal(5, head.Json.GetProperty("data_lane_pushes").GetInt64());
        }
        finally
        {
            children.ForEach(c => c.Dispose());
        }
    }

    [Fact]
    public async Task ATreeOfReceiverProcessesHoldsEveryVersionThroughItsRelaysAlone()
    {
        // 5 receivers, fan-out 2: the publisher feeds receivers 0 and 3; 0 relays to 1 and 2, 3 to 4.
        var children = Enumerable.Range(0, 5).Select(_ => ChildReceiver.Start(Tensors, Size, "--listen", "127.0.0.1:0")).ToList();
        try
        {
            var addresses = children.Select(c => c.Address()).ToList();
            foreach (var dtype in new[] { WeightDtype.F32, WeightDtype.Bf16 })
            {
                using var publisher = new NetworkWeightPublisher(addresses, Tensors * Size, Layout, NetworkPublisherOptions.Topology("tree", 2, dtype, Cap));
                long version = dtype == WeightDtype.F32 ? 1 : 2;
                var p = Weights.Random(Tensors * Size, (int)version);
                await Task.Run(() => publisher.Publish(version, p));
                Assert.Empty(publisher.LastFailures);
                Assert.Empty(publisher.LastDirect);   // every receiver got it through the tree, none from the publisher's sweep
                string digest = Weights.Digest(dtype == WeightDtype.F32 ? p : Weights.RoundedToBf16(p));
                Assert.All(children, c => Assert.Equal(digest, c.WaitForVersion(version)));
            }

            // A relaying hop dies: its subtree is reached directly and the dead one is named.
            children[0].Kill();
            using var again = new NetworkWeightPublisher(addresses, Tensors * Size, Layout, NetworkPublisherOptions.Topology("tree", 2, WeightDtype.F32, Cap));
            var p3 = Weights.Random(Tensors * Size, 3);
            await Task.Run(() => again.Publish(3, p3));
            Assert.Contains(addresses[0].ToString(), Assert.Single(again.LastFailures));
            Assert.Equal([addresses[1], addresses[2]], again.LastDirect);
            Assert.All(children.Skip(1), c => Assert.Equal(Weights.Digest(p3), c.WaitForVersion(3)));
        }
        finally
        {
            children.ForEach(c => c.Dispose());
        }
    }

    [Fact]
    public void RelayGroupsSplitTheReceiversIntoConsecutiveSubtreesOfEvenSize()
    {
        int[] five = [0, 1, 2, 3, 4];
        static string Text(List<List<int>> groups) => string.Join("|", groups.Select(g => string.Join(",", g)));
        Assert.Equal("0,1,2|3,4", Text(NetworkPush.Groups(five, 2)));
        Assert.Equal("0,1,2,3,4", Text(NetworkPush.Groups(five, 1)));
        Assert.Equal("0,1,2,3,4", Text(NetworkPush.Groups(five, 0)));   // 0 on the wire: a chain
        Assert.Equal("0|1|2|3|4", Text(NetworkPush.Groups(five, 9)));
        Assert.Empty(NetworkPush.Groups(Array.Empty<int>(), 2));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AHostilePeerGetsClearErrorsAndTheReceiverKeepsServingItsVersion(bool lane)
    {
        using var child = ChildReceiver.Start(Tensors, Size, "--listen", "127.0.0.1:0");
        var address = child.Address();
        using var publisher = new NetworkWeightPublisher([address], Tensors * Size, Layout, new NetworkPublisherOptions { BucketCapBytes = Cap });
        var p1 = Weights.Random(Tensors * Size, 4);
        await Task.Run(() => publisher.Publish(1, p1));
        string digest = child.WaitForVersion(1);
        using var channel = GrpcChannels.Create(address);
        var client = await ClientAsync(channel, lane);
        var v2 = EncodedVersion.Encode(2, Weights.Random(Tensors * Size, 5), Layout, WeightDtype.F32, Cap);

        // A sender that stops mid-stream: half the buckets, then the call is gone.
        using (var cts = new CancellationTokenSource())
        {
            var call = client.Push(cancellationToken: cts.Token);
            await call.RequestStream.WriteAsync(new Wire.WeightChunk { Manifest = v2.Manifest.ToWire() });
            for (int i = 0; i < v2.BucketCount / 2; i++)
            {
                await call.RequestStream.WriteAsync(Bucket(2, i, v2.Bucket(i)));
            }

            await cts.CancelAsync();
            call.Dispose();
        }

        var renamed = EncodedVersion.Encode(2, new float[Tensors * Size], Layout.Select((t, i) => i == 5 ? t with { Name = "t5.bad" } : t).ToList(), WeightDtype.F32, Cap);
        var e = await Assert.ThrowsAsync<RpcException>(() => Push(client, renamed.Manifest.ToWire()));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("t5.bad", e.Status.Detail);

        var stale = EncodedVersion.Encode(1, new float[Tensors * Size], Layout, WeightDtype.F32, Cap);
        Assert.Equal(StatusCode.FailedPrecondition, (await Assert.ThrowsAsync<RpcException>(() => Push(client, stale.Manifest.ToWire()))).StatusCode);

        var unknownDtype = v2.Manifest.ToWire();
        foreach (var t in unknownDtype.Tensors)
        {
            t.Dtype = (Wire.WeightDtype)5;
        }

        Assert.Contains("unknown", (await Assert.ThrowsAsync<RpcException>(() => Push(client, unknownDtype))).Status.Detail);
        e = await Assert.ThrowsAsync<RpcException>(() => Push(client, v2.Manifest.ToWire(), Bucket(2, v2.BucketCount + 3, v2.Bucket(0))));
        Assert.Contains("beyond the manifest", e.Status.Detail);
        e = await Assert.ThrowsAsync<RpcException>(() => Push(client, null, Bucket(2, 0, v2.Bucket(0))));
        Assert.Contains("must be the manifest", e.Status.Detail);

        // Garbage bytes in every bucket: none is taken; those the stopped sender never sent are reported missing (the
        // ones it did send may have been kept for a repair of version 2).
        var reply = await Push(client, v2.Manifest.ToWire(), Enumerable.Range(0, v2.BucketCount).Select(i => Bucket(2, i, Flip(ByteString.CopyFrom(v2.Bucket(i).Span)))).ToArray());
        Assert.Equal(1, reply.HeldVersion);
        Assert.Subset(reply.MissingBuckets.ToHashSet(), Enumerable.Range(v2.BucketCount / 2, v2.BucketCount - (v2.BucketCount / 2)).ToHashSet());

        Assert.Equal(1, (await client.StatusAsync(new Wire.CheckpointStatusRequest())).HeldVersion);
        Assert.Equal((1L, digest), child.Status());
        var p3 = Weights.Random(Tensors * Size, 6);
        await Task.Run(() => publisher.Publish(3, p3));   // still serving
        Assert.Equal(Weights.Digest(p3), child.WaitForVersion(3));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task APeerThatStallsMidStreamIsDroppedAndDoesNotHoldTheReceiver(bool lane)
    {
        await using var receiver = await NetworkWeightReceiver.StartAsync(Layout, new NetworkReceiverOptions { ChunkTimeout = TimeSpan.FromSeconds(1) });
        using var channel = GrpcChannels.Create(receiver.Address);
        var client = await ClientAsync(channel, lane);
        var v1 = EncodedVersion.Encode(1, Weights.Random(Tensors * Size, 7), Layout, WeightDtype.F32, Cap);
        using var stalled = client.Push();
        await stalled.RequestStream.WriteAsync(new Wire.WeightChunk { Manifest = v1.Manifest.ToWire() });
        await stalled.RequestStream.WriteAsync(Bucket(1, 0, v1.Bucket(0)));   // then nothing, the call left open

        var e = await Assert.ThrowsAsync<RpcException>(() => stalled.ResponseAsync);
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        Assert.Contains("no chunk of version 1", e.Status.Detail);
        using var publisher = new NetworkWeightPublisher([receiver.Address], Tensors * Size, Layout, new NetworkPublisherOptions { BucketCapBytes = Cap });
        var p2 = Weights.Random(Tensors * Size, 8);
        await publisher.PublishAsync(2, p2);
        Assert.Empty(publisher.LastFailures);
        Assert.True(receiver.TryGetNewer(-1, out var w));
        Assert.Equal(p2, w!.Parameters);
    }

    [Fact]
    public async Task AMixedChainRelaysOverEachNextHopsOwnTransport()
    {
        // The middle receiver runs without a data lane: the publisher's push to the head and the middle's relay to the
        // last go over their lanes, the head's relay to the middle over gRPC.
        var children = new[] { "0", "off", "0" }.Select(l => ChildReceiver.Start(Tensors, Size, "--listen", "127.0.0.1:0", "--data-lane-port", l)).ToList();
        try
        {
            var addresses = children.Select(c => c.Address()).ToList();
            using var publisher = new NetworkWeightPublisher(addresses, Tensors * Size, Layout, new NetworkPublisherOptions { BucketCapBytes = Cap });
            var p1 = Weights.Random(Tensors * Size, 11);
            await Task.Run(() => publisher.Publish(1, p1));
            Assert.Empty(publisher.LastFailures);
            Assert.Empty(publisher.LastDirect);
            Assert.All(children, c => Assert.Equal(Weights.Digest(p1), c.WaitForVersion(1)));
            var lanePushes = children.Select(c => c.Finish()).Select(r => (r.ExitCode, r.Json.GetProperty("data_lane_pushes").GetInt64())).ToList();
            Assert.Equal([(0, 1L), (0, 0L), (0, 1L)], lanePushes);
        }
        finally
        {
            children.ForEach(c => c.Dispose());
        }
    }

    [Fact]
    public async Task AReceiverWhoseLaneCannotBeReachedGetsEveryVersionOverGrpc()
    {
        await using var a = await NetworkWeightReceiver.StartAsync(Layout);
        await using var b = await NetworkWeightReceiver.StartAsync(Layout);
        int bLane = b.DataLanePort;
        await b.Node.StopDataLaneAsync();   // b's Status still names its lane, where nothing listens (a firewall that admits gRPC only)
        Assert.Equal(bLane, (await new Wire.Checkpoint.CheckpointClient(GrpcChannels.Create(b.Address)).StatusAsync(new Wire.CheckpointStatusRequest())).DataLanePort);
        using var publisher = new NetworkWeightPublisher([a.Address, b.Address], Tensors * Size, Layout, new NetworkPublisherOptions { BucketCapBytes = Cap });

        // a's relay to b fails on the lane; the publisher finds b behind and pushes to it directly, falling back to gRPC
        var p1 = Weights.Random(Tensors * Size, 15);
        await publisher.PublishAsync(1, p1);
        Assert.Empty(publisher.LastFailures);
        Assert.Equal([b.Address], publisher.LastDirect);
        foreach (var r in new[] { a, b })
        {
            Assert.True(r.TryGetNewer(-1, out var w));
            Assert.Equal(p1, w!.Parameters);
            r.Release(w);
        }

        // the next version: a relays to b over gRPC (the broken lane is not tried again for a minute), no direct push
        var p2 = Weights.Random(Tensors * Size, 16);
        await publisher.PublishAsync(2, p2);
        Assert.Empty(publisher.LastFailures);
        Assert.Empty(publisher.LastDirect);
        Assert.True(b.TryGetNewer(1, out var w2));
        Assert.Equal(p2, w2!.Parameters);
        Assert.Equal(2, a.Node.DataLanePushes);
        Assert.Equal(0, b.Node.DataLanePushes);
    }

    [Fact]
    public async Task TheDataLaneAnswersBytesThatAreNotItsFramingWithAClearErrorAndKeepsTheVersion()
    {
        using var child = ChildReceiver.Start(Tensors, Size, "--listen", "127.0.0.1:0");
        var address = child.Address();
        using var publisher = new NetworkWeightPublisher([address], Tensors * Size, Layout, new NetworkPublisherOptions { BucketCapBytes = Cap });
        var p1 = Weights.Random(Tensors * Size, 12);
        await Task.Run(() => publisher.Publish(1, p1));
        string digest = child.WaitForVersion(1);
        using var channel = GrpcChannels.Create(address);
        int port = (await new Wire.Checkpoint.CheckpointClient(channel).StatusAsync(new Wire.CheckpointStatusRequest())).DataLanePort;
        Assert.True(port > 0);

        byte[] Frame(byte type, int length, byte[]? body = null) =>
            [.. new byte[] { type }, .. BitConverter.GetBytes(length), .. body ?? []];
        byte[] preface = "K2RLCKP1"u8.ToArray();
        var v2 = EncodedVersion.Encode(2, Weights.Random(Tensors * Size, 13), Layout, WeightDtype.F32, Cap);
        var manifest = new Wire.WeightChunk { Manifest = v2.Manifest.ToWire() }.ToByteArray();
        var cases = new (byte[] Bytes, StatusCode Code, string Says)[]
        {
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray(), StatusCode.InvalidArgument, "not a k2rl checkpoint data-lane stream"),
            ([.. preface, .. Frame(1, 1 << 30)], StatusCode.ResourceExhausted, "beyond this receiver's limit"),
            ([.. preface, .. Frame(9, 4, [1, 2, 3, 4])], StatusCode.InvalidArgument, "unknown data-lane frame type 9"),
            ([.. preface, .. Frame(1, 6, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])], StatusCode.InvalidArgument, "not a k2rl.v1.WeightChunk"),
            ([.. preface, .. Frame(1, manifest.Length, manifest), .. Frame(2, 8, new byte[8])], StatusCode.InvalidArgument, "shorter than its 20-byte header"),
        };
        foreach (var (bytes, code, says) in cases)
        {
            var (gotCode, detail) = await RawLanePushAsync(port, bytes, closeAfter: false);
            Assert.Equal(code, gotCode);
            Assert.Contains(says, detail);
        }

        // A sender that closes in the middle of a bucket: no reply to give, and nothing partial is swapped in.
        var bucket0 = v2.Bucket(0).ToArray();
        byte[] header = [.. BitConverter.GetBytes(2L), .. BitConverter.GetBytes(0), .. BitConverter.GetBytes(v2.Manifest.Buckets[0].Checksum)];
        var cut = await RawLanePushAsync(port, [.. preface, .. Frame(1, manifest.Length, manifest), .. Frame(2, 20 + bucket0.Length, [.. header, .. bucket0[..(bucket0.Length / 2)]])],
            closeAfter: true);
        Assert.Null(cut.Code);

        Assert.Equal((1L, digest), child.Status());
        var p3 = Weights.Random(Tensors * Size, 14);
        await Task.Run(() => publisher.Publish(3, p3));   // still serving, over the lane
        Assert.Empty(publisher.LastFailures);
        Assert.Equal(Weights.Digest(p3), child.WaitForVersion(3));
    }

    // Sends raw bytes to a data lane and reads its reply frame (null when it closed without one).
    private static async Task<(StatusCode? Code, string Detail)> RawLanePushAsync(int port, byte[] bytes, bool closeAfter)
    {
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        await socket.ConnectAsync("127.0.0.1", port);
        await using var stream = new System.Net.Sockets.NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync(bytes);
        if (closeAfter)
        {
            socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var head = new byte[5];
        if (await stream.ReadAtLeastAsync(head, 5, throwOnEndOfStream: false, timeout.Token) < 5)
        {
            return (null, "");
        }

        Assert.Equal(4, head[0]);   // a reply frame
        var body = new byte[BitConverter.ToInt32(head, 1)];
        await stream.ReadExactlyAsync(body, timeout.Token);
        int detailLength = BitConverter.ToInt32(body, 4);
        return ((StatusCode)BitConverter.ToInt32(body, 0), System.Text.Encoding.UTF8.GetString(body, 8, detailLength));
    }

    // A Checkpoint client that pushes over the receiver's data lane (when lane) or over gRPC.
    private static async Task<Wire.Checkpoint.CheckpointClient> ClientAsync(Grpc.Net.Client.GrpcChannel channel, bool lane)
    {
        var grpc = new Wire.Checkpoint.CheckpointClient(channel);
        if (!lane)
        {
            return grpc;
        }

        int port = (await grpc.StatusAsync(new Wire.CheckpointStatusRequest())).DataLanePort;
        Assert.True(port > 0, "the receiver runs a data lane by default");
        return new Wire.Checkpoint.CheckpointClient(new DataLaneInvoker(channel.CreateCallInvoker(), "127.0.0.1", port, () => { }));
    }

    private static ByteString Flip(ByteString data)
    {
        var bytes = data.ToByteArray();
        bytes[bytes.Length / 2] ^= 0x40;
        return ByteString.CopyFrom(bytes);
    }

    private static Wire.WeightChunk Bucket(long version, int index, ReadOnlyMemory<byte> data) => Bucket(version, index, ByteString.CopyFrom(data.Span));

    private static Wire.WeightChunk Bucket(long version, int index, ByteString data) =>
        new() { Bucket = new Wire.WeightBucket { Version = version, Index = index, Data = data } };

    private static async Task<Wire.PushReply> Push(Wire.Checkpoint.CheckpointClient client, Wire.WeightManifest? manifest, params Wire.WeightChunk[] buckets)
    {
        using var call = client.Push();
        if (manifest is not null)
        {
            await call.RequestStream.WriteAsync(new Wire.WeightChunk { Manifest = manifest });
        }

        foreach (var b in buckets)
        {
            await call.RequestStream.WriteAsync(b);
        }

        await call.RequestStream.CompleteAsync();
        return await call.ResponseAsync;
    }
}
