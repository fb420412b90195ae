using System.Buffers;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace K2RL.Model.IO;

/// <summary>
/// An open safetensors file whose header has been validated (<see cref="SafetensorsHeader"/>). Tensors are
/// read on demand straight into fp32 spans: F32 data lands in the destination with no intermediate copy,
/// BF16 and F16 data goes through a small fixed chunk buffer, so loading a model never holds the file in
/// memory twice.
/// </summary>
public sealed class SafetensorsReader : IDisposable
{
    private const int ChunkBytes = 1 << 20;

    private readonly SafeFileHandle file;

    private SafetensorsReader(SafeFileHandle file, string path, SafetensorsHeader header)
    {
        this.file = file;
        Path = path;
        Header = header;
    }

    public string Path { get; }

    public SafetensorsHeader Header { get; }

    /// <summary>Opens <paramref name="path"/> and validates its header; throws <see cref="K2RL.Common.CorruptFileException"/>.</summary>
    public static SafetensorsReader Open(string path)
    {
        if (!File.Exists(path))
        {
            throw CheckpointErrors.File(path, "file not found");
        }

        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        try
        {
            var header = SafetensorsHeader.Read(handle, path);
            if (header.Metadata.TryGetValue(SafetensorsWriter.FormatKey, out string? version) && version != SafetensorsWriter.FormatVersion)
            {
                // Files from other tools carry no k2rl_format and load as plain safetensors.
                throw CheckpointErrors.Header(path,
                    $"\"{SafetensorsHeader.MetadataKey}\".\"{SafetensorsWriter.FormatKey}\" is \"{version}\"; this build reads version {SafetensorsWriter.FormatVersion}");
            }

            return new SafetensorsReader(handle, path, header);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Reads one tensor, converted to fp32, into <paramref name="destination"/> (exactly its element count).</summary>
    public void ReadInto(SafetensorsEntry entry, Span<float> destination)
    {
        if (destination.Length != entry.ElementCount)
        {
            throw new ArgumentException(
                $"{Path}: tensor \"{entry.Name}\" has {entry.ElementCount} elements, the destination {destination.Length}", nameof(destination));
        }

        long position = Header.DataStart + entry.Begin;
        if (entry.DType == SafetensorsDType.F32 && BitConverter.IsLittleEndian)
        {
            SafetensorsHeader.ReadExactly(file, MemoryMarshal.AsBytes(destination), position, Path);
            return;
        }

        int size = entry.DType.ElementSize();
        byte[] chunk = ArrayPool<byte>.Shared.Rent(ChunkBytes);
        try
        {
            int perChunk = ChunkBytes / size;
            while (destination.Length > 0)
            {
                int n = Math.Min(perChunk, destination.Length);
                var bytes = chunk.AsSpan(0, n * size);
                SafetensorsHeader.ReadExactly(file, bytes, position, Path);
                SafetensorsDTypes.ToFloat(entry.DType, bytes, destination[..n]);
                destination = destination[n..];
                position += bytes.Length;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }

    /// <summary>Reads the named tensor into a new fp32 array.</summary>
    public float[] ReadTensor(string name)
    {
        if (!Header.TryGet(name, out var entry))
        {
            throw CheckpointErrors.Tensor(Path, name, "not in this file");
        }

        var values = new float[checked((int)entry.ElementCount)];
        ReadInto(entry, values);
        return values;
    }

    /// <summary>Fills a <paramref name="layout"/>-sized buffer from this file, validated as <see cref="SafetensorsSet.LoadInto"/> does.</summary>
    public void LoadInto(ParameterLayout layout, float[] buffer) => SafetensorsSet.Of(this).LoadInto(layout, buffer);

    public void Dispose() => file.Dispose();
}
