using System.IO.MemoryMappedFiles;
using System.Text.RegularExpressions;

namespace K2RL.CheckpointEngine;

/// <summary>
/// The file in <c>/dev/shm</c> that one publisher writes and the rollout-worker processes of its node read. Two slots
/// (the double buffer): a new version is written into the slot not being served, then the current-slot word flips to
/// it; a reader copies the current slot out at its own pace. Each slot has a sequence word, odd while it is written, so
/// a reader knows the slot changed under it; every bucket carries its checksum in the slot's manifest, so a reader
/// never takes a torn or stale byte. A publisher that dies mid-version leaves the current slot as it was.
/// <code>
/// [0, 4096)      header: magic "K2RLSHMW", format 1, slot data bytes, slot manifest bytes, current slot (−1: none),
///                published version; per slot s (at 64 + 64 s): sequence, version, manifest length
/// slot s         manifest (protobuf k2rl.v1.WeightManifest) [manifest bytes], then data [slot data bytes]
/// </code>
/// Little-endian; every word 8-byte aligned.
/// </summary>
internal sealed partial class SharedMemoryLayout : IDisposable
{
    public const long Magic = 0x5748_4D53_4C52_324B; // "K2RLSHMW" read little-endian
    public const int Format = 1;
    public const int HeaderBytes = 4096;
    private const int MagicAt = 0, FormatAt = 8, DataBytesAt = 16, ManifestBytesAt = 24, CurrentAt = 32, PublishedAt = 40;

    private readonly MemoryMappedFile file;
    private readonly K2RL.Kernels.MappedSpans spans;   // the mapping itself: bulk reads and writes are spans over it, no stream or copy between

    private SharedMemoryLayout(MemoryMappedFile file, MemoryMappedViewAccessor view, string path, long dataBytes, long manifestBytes)
    {
        this.file = file;
        spans = new K2RL.Kernels.MappedSpans(view);
        View = view;
        Path = path;
        DataBytes = dataBytes;
        ManifestBytes = manifestBytes;
    }

    public MemoryMappedViewAccessor View { get; }

    public string Path { get; }

    public long DataBytes { get; }

    public long ManifestBytes { get; }

    public int Current => View.ReadInt32(CurrentAt);

    public long Published => View.ReadInt64(PublishedAt);

    /// <summary>/dev/shm/k2rl-weights-NAME; NAME is letters, digits, '-', '_', '.'.</summary>
    public static string PathOf(string name)
    {
        if (!NamePattern().IsMatch(name))
        {
            throw new K2RL.Common.ConfigException($"shared-memory name '{name}' must be 1-100 letters, digits, '-', '_' or '.'");
        }

        return System.IO.Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : System.IO.Path.GetTempPath(), "k2rl-weights-" + name);
    }

    /// <summary>Creates (or takes over, when the geometry matches) the file of <paramref name="name"/>.</summary>
    public static SharedMemoryLayout Create(string name, long dataBytes, long manifestBytes)
    {
        string path = PathOf(name);
        long total = HeaderBytes + 2 * (manifestBytes + dataBytes);
        if (File.Exists(path))
        {
            try
            {
                var existing = Open(name);
                if (existing.DataBytes == dataBytes && existing.ManifestBytes == manifestBytes)
                {
                    return existing;
                }

                existing.Dispose();
            }
            catch (WeightTransferException)
            {
                // not ours or another geometry: replaced below
            }

            File.Delete(path);   // readers of the old file keep their mapping and see no new version
        }

        var mapped = MemoryMappedFile.CreateFromFile(path, FileMode.CreateNew, null, total, MemoryMappedFileAccess.ReadWrite);
        var view = mapped.CreateViewAccessor(0, total, MemoryMappedFileAccess.ReadWrite);
        view.Write(DataBytesAt, dataBytes);
        view.Write(ManifestBytesAt, manifestBytes);
        view.Write(CurrentAt, -1);
        view.Write(PublishedAt, -1L);
        view.Write(FormatAt, Format);
        Interlocked.MemoryBarrier();
        view.Write(MagicAt, Magic);
        return new SharedMemoryLayout(mapped, view, path, dataBytes, manifestBytes);
    }

    /// <summary>Opens an existing file read-only enough for a receiver (and checks it is one of ours).</summary>
    public static SharedMemoryLayout Open(string name)
    {
        string path = PathOf(name);
        var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        long length = stream.Length;
        if (length < HeaderBytes)
        {
            stream.Dispose();
            throw new WeightTransferException($"{path}: {length} bytes is shorter than the {HeaderBytes}-byte header");
        }

        var mapped = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
        var view = mapped.CreateViewAccessor(0, length, MemoryMappedFileAccess.ReadWrite);
        long magic = view.ReadInt64(MagicAt), data = view.ReadInt64(DataBytesAt), manifest = view.ReadInt64(ManifestBytesAt);
        int format = view.ReadInt32(FormatAt);
        if (magic != Magic || format != Format || data <= 0 || manifest <= 0 || HeaderBytes + 2 * (data + manifest) != length)
        {
            view.Dispose();
            mapped.Dispose();
            throw new WeightTransferException($"{path} is not a K2RL weights file of format {Format} (magic {magic:x16}, format {format}, {length} bytes)");
        }

        return new SharedMemoryLayout(mapped, view, path, data, manifest);
    }

    public long SequenceAt(int slot) => 64 + (64 * slot);

    public long VersionAt(int slot) => 72 + (64 * slot);

    public long ManifestLengthAt(int slot) => 80 + (64 * slot);

    public long ManifestStart(int slot) => HeaderBytes + (slot * (ManifestBytes + DataBytes));

    public long DataStart(int slot) => ManifestStart(slot) + ManifestBytes;

    public void SetCurrent(int slot, long version)
    {
        Interlocked.MemoryBarrier();
        View.Write(CurrentAt, slot);
        View.Write(PublishedAt, version);
        Interlocked.MemoryBarrier();
    }

    /// <summary>Bytes [at, at + length) of the mapping, to read (a reader checks the slot's sequence after).</summary>
    public ReadOnlySpan<byte> Span(long at, int length) => spans.Span(Check(at, length), length);

    /// <summary>Bytes [at, at + length) of the mapping, to write.</summary>
    public Span<byte> WritableSpan(long at, int length) => spans.WritableSpan(Check(at, length), length);

    public void Read(long at, Span<byte> into) => Span(at, into.Length).CopyTo(into);

    public void Write(long at, ReadOnlySpan<byte> from) => from.CopyTo(WritableSpan(at, from.Length));

    public void Dispose()
    {
        spans.Dispose();
        View.Dispose();
        file.Dispose();
    }

    private long Check(long at, int length) => at >= 0 && length >= 0 && at + length <= View.Capacity ? at
        : throw new WeightTransferException($"{Path}: bytes [{at}, {at + length}) are outside the {View.Capacity}-byte mapping");

    [GeneratedRegex("^[A-Za-z0-9._-]{1,100}$")]
    private static partial Regex NamePattern();
}
