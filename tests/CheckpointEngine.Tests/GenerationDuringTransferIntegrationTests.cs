using K2RL.Common.Rpc;
using K2RL.Model;
using K2RL.Rollout;
using K2RL.Tests.Shared;
using Wire = K2RL.Protos.V1;

namespace K2RL.CheckpointEngine.Tests;

/// <summary>
/// A real rollout engine (k2-test, random weights) reading a real network receiver (Kestrel, gRPC) while a new version
/// is pushed to that receiver bucket by bucket: the engine keeps decoding between buckets on the version it holds, and
/// takes the new one at the first step boundary after it is complete, in a step that still decodes every sequence.
/// Asserted on versions and token counts per step, never on time.
/// </summary>
public sealed class GenerationDuringTransferIntegrationTests
{
    private const int Sequences = 3;

    [Fact]
    public async Task DecodeStepsContinueWhileAVersionArrivesAndTheSwapHappensAtTheNextStepBoundary()
    {
        var config = ModelConfig.Load(Path.Combine(ExternalTools.RepoRoot(), "configs", "models", "k2-test.json"));
        var decoder = new ModelDecoder(config, Sequences, blockTokens: 8);
        var v1 = new K2Model(config);
        v1.InitializeWeights(1);
        var v2 = new K2Model(config);
        v2.InitializeWeights(2);
        await using var receiver = await NetworkWeightReceiver.StartAsync(decoder.WeightTensors, length: decoder.ParameterCount);
        using var channel = GrpcChannels.Create(receiver.Address, new GrpcClientOptions());
        var client = new Wire.Checkpoint.CheckpointClient(channel);
        Assert.Equal(1, (await NetworkPush.PushWithRepairAsync(client, HeldWeights.From(Encode(1, v1.Parameters, decoder)), [], 1, null, default)).HeldVersion);

        var engine = new RolloutEngine(decoder, new EngineOptions(), receiver, initialVersion: 0);
        var versions = new List<long>[Sequences];
        for (int i = 0; i < Sequences; i++)
        {
            var seen = versions[i] = [];
            engine.Submit(new GenerationRequest($"s{i}", [1, 2, 3], new SamplingParams { MaxTokens = 60, Seed = (ulong)i, StopOnRepetition = false }),
                t => seen.Add(t.WeightVersion));
        }

        engine.Step();   // admission (prefill, first token) on version 1, taken at this step's boundary
        Assert.Equal(1, engine.WeightVersion);

        // Version 2 arrives one bucket at a time; between buckets the engine decodes a step on version 1.
        var encoded = Encode(2, v2.Parameters, decoder);
        Assert.InRange(encoded.BucketCount, 3, 57);   // several steps during the transfer, all within the 60 tokens asked (1 + buckets + 2)
        using var call = client.Push();
        await call.RequestStream.WriteAsync(new Wire.WeightChunk { Manifest = encoded.Manifest.ToWire() });
        int stepsDuringTransfer = 0;
        for (int b = 0; b < encoded.BucketCount; b++)
        {
            await call.RequestStream.WriteAsync(NetworkPush.Chunk(2, b, Google.Protobuf.UnsafeByteOperations.UnsafeWrap(encoded.Bucket(b))));
            await WaitUntil(() => receiver.Node.Assembler.Missing.Count == encoded.BucketCount - b - 1);
            Assert.Equal(Sequences, engine.Step());   // every sequence decodes a token: nothing waits for the transfer
            Assert.Equal(1, engine.WeightVersion);    // a partial version is never taken, even with every bucket in
            stepsDuringTransfer++;
        }

        await call.RequestStream.CompleteAsync();
        Assert.Equal(2, (await call.ResponseAsync).HeldVersion);   // complete: announced to the slot
        Assert.Equal(Sequences, engine.Step());   // the swap's step: it loads version 2 at its boundary and still decodes all
        Assert.Equal(2, engine.WeightVersion);
        Assert.Equal(Sequences, engine.Step());

        Assert.Equal(encoded.BucketCount, stepsDuringTransfer);
        foreach (var seen in versions)
        {
            // prefill token and one per transfer step on version 1, then the swap step and the next on version 2: the
            // version changes once, between two steps, with no step lost
            Assert.Equal([.. Enumerable.Repeat(1L, 1 + stepsDuringTransfer), 2L, 2L], seen);
        }
    }

    private static EncodedVersion Encode(long version, float[] parameters, ModelDecoder decoder) =>
        EncodedVersion.Encode(version, parameters, decoder.WeightTensors, WeightDtype.F32, capBytes: 16 << 10);

    private static async Task WaitUntil(Func<bool> done)
    {
        for (int i = 0; !done(); i++)
        {
            Assert.True(i < 6000, "the receiver did not take the bucket within a minute");
            await Task.Delay(10);
        }
    }
}
