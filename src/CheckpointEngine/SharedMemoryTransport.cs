using K2RL.Kernels;
using System.Runtime.InteropServices;
using Google.Protobuf;

namespace K2RL.CheckpointEngine;

/// <summary>
/// Publishes versions into <c>/dev/shm</c> (<see cref="SharedMemoryLayout"/>) for receivers in other processes on the
/// node: each version is encoded bucket by bucket straight into the slot not being served (summed by the copy as it
/// goes), its manifest written beside it, and only then made current.
/// </summary>
public sealed class SharedMemoryWeightPublisher : IWeightPublisher, IDisposable
{
    private readonly SharedMemoryLayout file;
    private readonly IReadOnlyList<TensorSpec> tensors;
    private readonly WeightDtype dtype;
    private readonly long capBytes;
    private readonly long parameterCount;
    private readonly byte[] piece = new byte[256 << 10];   // bf16 encoded here, in cache, then copied into the slot

    /// <param name="name">the file is /dev/shm/k2rl-weights-NAME.</param>
    /// <param name="parameterCount">the flat buffer's length; <paramref name="tensors"/> describe it.</param>
    public SharedMemoryWeightPublisher(string name, long parameterCount, IReadOnlyList<TensorSpec> tensors, WeightDtype dtype = WeightDtype.F32,
        long capBytes = BucketPlan.DefaultCapBytes)
    {
        this.tensors = tensors;
        this.dtype = dtype;
        this.capBytes = capBytes;
        this.parameterCount = parameterCount;
        // room for the manifest of the finest bucket plan (one bucket per tensor), whatever the free memory at publish time
        var finest = new WeightManifest(long.MaxValue, parameterCount, dtype, tensors,
            tensors.Select(t => new BucketSpec(long.MaxValue, long.MaxValue, ulong.MaxValue)).Append(new BucketSpec(long.MaxValue, long.MaxValue, ulong.MaxValue)).ToList());
        long manifestBytes = (finest.ToWire().CalculateSize() + 4095) / 4096 * 4096;
        file = SharedMemoryLayout.Create(name, parameterCount * sizeof(float), manifestBytes);
        LatestVersion = file.Published;
    }

    /// <summary>The file's path.</summary>
    public string Path => file.Path;

    /// <summary>Removes the file of <paramref name="name"/>, so the next publisher starts its versions over (readers of the old file see no new version).</summary>
    public static void Delete(string name) => File.Delete(SharedMemoryLayout.PathOf(name));

    /// <summary>The file a shared-memory name stands for; a name that breaks the rule is a <see cref="K2RL.Common.ConfigException"/> saying it.</summary>
    public static string PathOf(string name) => SharedMemoryLayout.PathOf(name);

    public long LatestVersion { get; private set; }

    public void Publish(long version, ReadOnlySpan<float> parameters) => Publish(version, parameters, stopAfterBuckets: int.MaxValue);

    /// <summary>As <see cref="Publish(long, ReadOnlySpan{float})"/>; a test stops after some buckets, as a publisher that dies mid-version would.</summary>
    internal void Publish(long version, ReadOnlySpan<float> parameters, int stopAfterBuckets)
    {
        if (version <= LatestVersion)
        {
            throw new WeightTransferException($"weight version {version} is not above the last published version {LatestVersion}");
        }

        if (parameters.Length != parameterCount)
        {
            throw new ArgumentException($"parameter buffer has {parameters.Length} floats; this publisher's layout has {parameterCount}");
        }

        var plan = BucketPlan.Manifest(version, parameterCount, tensors, dtype, capBytes);
        int slot = file.Current == 0 ? 1 : 0;
        long sequence = file.View.ReadInt64(file.SequenceAt(slot));
        file.View.Write(file.SequenceAt(slot), (sequence | 1) + 2);   // odd: being written
        Interlocked.MemoryBarrier();
        var buckets = new BucketSpec[plan.Buckets.Count];
        for (int i = 0; i < buckets.Length; i++)
        {
            if (i == stopAfterBuckets)
            {
                return;
            }

            var b = plan.Buckets[i];
            buckets[i] = b with { Checksum = WriteBucket(file.DataStart(slot) + (b.Offset * dtype.Size()), parameters.Slice((int)b.Offset, (int)b.Count)) };
        }

        byte[] manifest = (plan with { Buckets = buckets }).ToWire().ToByteArray();
        file.Write(file.ManifestStart(slot), manifest);
        file.View.Write(file.ManifestLengthAt(slot), (long)manifest.Length);
        file.View.Write(file.VersionAt(slot), version);
        Interlocked.MemoryBarrier();
        file.View.Write(file.SequenceAt(slot), (sequence | 1) + 3);   // even: complete
        file.SetCurrent(slot, version);
        LatestVersion = version;
    }

    public void Dispose() => file.Dispose();

    // Writes the values into the mapping with streaming stores, summed by the copy (WordChecksum); bf16 is encoded
    // piece by piece into a buffer that stays in cache, then copied from there.
    private ulong WriteBucket(long at, ReadOnlySpan<float> values)
    {
        var sum = default(WordChecksum);
        int size = dtype.Size(), per = piece.Length / size;
        for (int i = 0; i < values.Length; i += per)
        {
            var part = values.Slice(i, Math.Min(per, values.Length - i));
            ReadOnlySpan<byte> bytes;
            if (dtype == WeightDtype.F32)
            {
                bytes = MemoryMarshal.AsBytes(part);
            }
            else
            {
                var dst = piece.AsSpan(0, part.Length * size);
                WireCodec.Encode(part, dtype, dst);
                bytes = dst;
            }

            sum.CopyAndAdd(bytes, file.WritableSpan(at + ((long)i * size), bytes.Length), (long)i * size);
        }

        WireCodec.FenceStreamingStores();
        return sum.Finish((long)values.Length * size);
    }
}

/// <summary>
/// A receiver in a rollout-worker process: it watches the node's shared-memory file (<see cref="SharedMemoryLayout"/>)
/// and, when a newer complete version is current, copies it out bucket by bucket (verified, only the tensors its model
/// holds) into a <see cref="WeightAssembler"/>, whose <see cref="Slot"/> the worker's rollout engine reads at its step
/// boundaries. A late or restarted receiver simply finds the current version there. Bad input (a file that is not
/// ours, a manifest that does not match the model) is reported in <see cref="LastError"/>; the receiver keeps its
/// version.
/// </summary>
public sealed class SharedMemoryWeightReceiver : IWeightSource, IDisposable
{
    private const int MaxAttempts = 3;
    private readonly string name;
    private readonly WeightAssembler assembler;
    private readonly CancellationTokenSource stop = new();
    private SharedMemoryLayout? file;
    private Thread? poller;

    /// <param name="model">the receiver's tensors; <paramref name="shard"/>: it holds only some of the sender's.</param>
    public SharedMemoryWeightReceiver(string name, IReadOnlyList<TensorSpec> model, long? length = null, bool shard = false)
    {
        SharedMemoryLayout.PathOf(name);
        this.name = name;
        assembler = new WeightAssembler(model, length, shard);
    }

    public WeightSlot Slot => assembler.Slot;

    public long HeldVersion => assembler.HeldVersion;

    /// <summary>Why the last attempt failed (null after a success).</summary>
    public string? LastError { get; private set; }

    /// <summary>Buckets read again because they failed their checksum.</summary>
    public long Refetched { get; private set; }

    /// <summary>Polls the file every <paramref name="interval"/> on a background thread.</summary>
    public void Start(TimeSpan interval)
    {
        poller = new Thread(() =>
        {
            while (!stop.Token.WaitHandle.WaitOne(interval))
            {
                TryReceive();
            }
        }) { IsBackground = true, Name = "k2rl-shm-weights" };
        poller.Start();
    }

    /// <summary>Takes the current version if it is newer than the held one; returns whether a version was taken.</summary>
    public bool TryReceive()
    {
        lock (stop)
        {
            return TryReceiveLocked();
        }
    }

    private bool TryReceiveLocked()
    {
        try
        {
            file ??= SharedMemoryLayout.Open(name);
        }
        catch (FileNotFoundException)
        {
            return false;   // no publisher yet
        }
        catch (WeightTransferException e)
        {
            LastError = e.Message;
            return false;
        }

        for (int attempt = 0; attempt < MaxAttempts; attempt++)
        {
            int slot = file.Current;
            if (slot is not (0 or 1))
            {
                return false;
            }

            long sequence = file.View.ReadInt64(file.SequenceAt(slot));
            long version = file.View.ReadInt64(file.VersionAt(slot));
            if ((sequence & 1) != 0 || version <= assembler.HeldVersion)
            {
                return false;
            }

            try
            {
                if (ReadSlot(file, slot, sequence))
                {
                    LastError = null;
                    return true;
                }
            }
            catch (WeightTransferException e)
            {
                assembler.Abandon();
                LastError = $"{file.Path}: {e.Message}";
                return false;
            }
        }

        return false;
    }

    public bool TryGetNewer(long currentVersion, out WeightSet? weights) => Slot.TryGetNewer(currentVersion, out weights);

    public void Release(WeightSet weights) => Slot.Release(weights);

    public void Dispose()
    {
        stop.Cancel();
        poller?.Join();
        file?.Dispose();
    }

    // One copy of the slot; false when the publisher rewrote it meanwhile (try again).
    private bool ReadSlot(SharedMemoryLayout f, int slot, long sequence)
    {
        long length = f.View.ReadInt64(f.ManifestLengthAt(slot));
        if (length <= 0 || length > f.ManifestBytes)
        {
            throw new WeightTransferException($"slot {slot} has a manifest of {length} bytes (room: {f.ManifestBytes})");
        }

        var bytes = new byte[length];
        f.Read(f.ManifestStart(slot), bytes);
        WeightManifest manifest;
        try
        {
            manifest = WeightManifest.FromWire(Protos.V1.WeightManifest.Parser.ParseFrom(bytes));
        }
        catch (InvalidProtocolBufferException) when (Changed(f, slot, sequence))
        {
            return false;
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new WeightTransferException($"slot {slot}'s manifest is not a k2rl.v1.WeightManifest: {e.Message}");
        }

        if (manifest.TotalBytes > f.DataBytes)
        {
            throw new WeightTransferException($"manifest of version {manifest.Version} needs {manifest.TotalBytes} bytes; the slot holds {f.DataBytes}");
        }

        assembler.Begin(manifest);
        long data = f.DataStart(slot);
        for (int i = 0; i < manifest.Buckets.Count; i++)
        {
            var bucket = f.Span(data + (manifest.Buckets[i].Offset * manifest.Dtype.Size()), checked((int)manifest.BucketBytes(i)));
            for (int attempt = 0; assembler.Accept(manifest.Version, i, bucket) == BucketResult.Corrupt; attempt++)
            {
                Refetched++;
                if (Changed(f, slot, sequence))
                {
                    assembler.Abandon();
                    return false;
                }

                if (attempt == MaxAttempts)
                {
                    throw new WeightTransferException($"bucket {i} of version {manifest.Version} failed its checksum {MaxAttempts + 1} times");
                }
            }
        }

        if (Changed(f, slot, sequence))
        {
            assembler.Abandon();
            return false;
        }

        return assembler.TryComplete() is not null;
    }

    private static bool Changed(SharedMemoryLayout f, int slot, long sequence)
    {
        Interlocked.MemoryBarrier();
        return f.View.ReadInt64(f.SequenceAt(slot)) != sequence;
    }
}
