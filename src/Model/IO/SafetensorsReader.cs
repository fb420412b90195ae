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
            return new SafetensorsReader(handle, path, SafetensorsHeader.Read(handle, path));
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

    /// <summary>
    /// Fills a <paramref name="layout"/>-sized buffer from this file. The file must hold exactly the layout's
    /// tensors with the layout's shapes (any of F32, BF16, F16), and every value must be finite; otherwise the
    /// error names the missing, extra or mis-shaped tensor, or the first non-finite value.
    /// </summary>
    public void LoadInto(ParameterLayout layout, float[] buffer)
    {
        if (buffer.LongLength != layout.TotalLength)
        {
            throw new ArgumentException($"buffer has {buffer.LongLength} floats, the layout {layout.TotalLength}", nameof(buffer));
        }

        CheckMatches(layout);
        foreach (var slot in layout.Tensors)
        {
            Header.TryGet(slot.Name, out var entry);
            var span = slot.Of(buffer);
            ReadInto(entry, span);
            int bad = IndexOfNonFinite(span);
            if (bad >= 0)
            {
                throw CheckpointErrors.Tensor(Path, slot.Name, $"element {bad} is {span[bad]} (weights must be finite)");
            }
        }
    }

    /// <summary>Checks that this file holds exactly the layout's tensors with the layout's shapes.</summary>
    public void CheckMatches(ParameterLayout layout)
    {
        foreach (var slot in layout.Tensors)
        {
            if (!Header.TryGet(slot.Name, out var entry))
            {
                throw CheckpointErrors.Tensor(Path, slot.Name, $"missing (the model needs it with shape {slot.ShapeText})");
            }

            if (!entry.ShapeEquals(slot.Shape))
            {
                throw CheckpointErrors.Tensor(Path, slot.Name,
                    $"has shape {CheckpointErrors.Shape(entry.Shape)}, the model needs {slot.ShapeText}");
            }
        }

        foreach (var entry in Header.Entries)
        {
            if (!layout.Contains(entry.Name))
            {
                throw CheckpointErrors.Tensor(Path, entry.Name,
                    $"is not part of this model (shape {CheckpointErrors.Shape(entry.Shape)}); the config and the weights disagree");
            }
        }
    }

    private static int IndexOfNonFinite(ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
            {
                return i;
            }
        }

        return -1;
    }

    public void Dispose() => file.Dispose();
}
