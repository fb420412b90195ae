using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using K2RL.Common;

namespace K2RL.Model.IO;

/// <summary>A tensor to write: fp32 values stored on disk as <paramref name="DType"/>.</summary>
public sealed record SafetensorsTensor(string Name, int[] Shape, ReadOnlyMemory<float> Data, SafetensorsDType DType = SafetensorsDType.F32);

/// <summary>
/// Writes safetensors files atomically (<see cref="AtomicFile"/>). Tensors are laid out widest dtype first
/// (then in the given order), the header is padded with spaces so the data section starts 8-byte aligned,
/// and <c>__metadata__</c> carries <c>"format": "pt"</c> (which Hugging Face transformers requires) and
/// <c>"k2rl_format": "1"</c>. Values are streamed from the caller's buffer; only BF16/F16 go through a
/// small conversion chunk.
/// </summary>
public static class SafetensorsWriter
{
    /// <summary>The <c>__metadata__</c> key that carries <see cref="FormatVersion"/>.</summary>
    public const string FormatKey = "k2rl_format";

    /// <summary>The version of K2RL's conventions in a file it writes (tensor names, F32 routing biases).</summary>
    public const string FormatVersion = "1";

    private const int ChunkFloats = 1 << 18;

    /// <summary>Writes <paramref name="tensors"/> to <paramref name="path"/>, replacing it atomically.</summary>
    public static void Write(string path, IReadOnlyList<SafetensorsTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        AtomicFile.Write(path, stream => WriteTo(stream, tensors, metadata, path));

    /// <summary>
    /// Writes a safetensors file to <paramref name="stream"/> (for callers with their own durable-file scheme);
    /// <paramref name="name"/> names it in errors.
    /// </summary>
    public static void WriteTo(Stream stream, IReadOnlyList<SafetensorsTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        string name = "safetensors stream")
    {
        var ordered = tensors
            .Select((t, i) => (t, i))
            .OrderByDescending(x => x.t.DType.ElementSize())
            .ThenBy(x => x.i)
            .Select(x => x.t)
            .ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in ordered)
        {
            long elements = t.Shape.Aggregate(1L, (a, b) => a * b);
            if (elements != t.Data.Length || t.Shape.Any(d => d < 0))
            {
                throw new ArgumentException($"tensor \"{t.Name}\": shape {CheckpointErrors.Shape(t.Shape)} does not hold {t.Data.Length} values");
            }

            if (!seen.Add(t.Name) || t.Name == SafetensorsHeader.MetadataKey)
            {
                throw new ArgumentException($"tensor name \"{t.Name}\" is repeated or reserved");
            }
        }

        byte[] header = BuildHeader(ordered, metadata);
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
        stream.Write(prefix);
        stream.Write(header);
        foreach (var t in ordered)
        {
            WriteData(stream, t, name);
        }
    }

    /// <summary>
    /// Writes every tensor of <paramref name="layout"/> from <paramref name="buffer"/> as <paramref name="dtype"/>.
    /// The routing biases (<c>e_score_correction_bias</c>) always stay F32, as in the published DeepSeek-V3
    /// and Kimi-K2 checkpoints: the balancing rule moves them in steps bf16 cannot represent.
    /// </summary>
    public static void WriteLayout(string path, ParameterLayout layout, float[] buffer, SafetensorsDType dtype = SafetensorsDType.F32,
        IReadOnlyDictionary<string, string>? metadata = null) =>
        Write(path, LayoutTensors(layout, buffer, dtype), metadata);

    /// <summary><see cref="WriteLayout(string, ParameterLayout, float[], SafetensorsDType, IReadOnlyDictionary{string, string}?)"/> to a stream.</summary>
    public static void WriteLayoutTo(Stream stream, ParameterLayout layout, float[] buffer, SafetensorsDType dtype = SafetensorsDType.F32,
        IReadOnlyDictionary<string, string>? metadata = null) =>
        WriteTo(stream, LayoutTensors(layout, buffer, dtype), metadata);

    private static List<SafetensorsTensor> LayoutTensors(ParameterLayout layout, float[] buffer, SafetensorsDType dtype)
    {
        if (buffer.LongLength != layout.TotalLength)
        {
            throw new ArgumentException($"buffer has {buffer.LongLength} floats, the layout {layout.TotalLength}", nameof(buffer));
        }

        return layout.Tensors
            .Select(s => new SafetensorsTensor(s.Name, s.Shape, buffer.AsMemory(checked((int)s.Offset), checked((int)s.Length)),
                s.IsRoutingBias ? SafetensorsDType.F32 : dtype))
            .ToList();
    }

    private static byte[] BuildHeader(List<SafetensorsTensor> ordered, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartObject(SafetensorsHeader.MetadataKey);
            json.WriteString("format", "pt");
            json.WriteString(FormatKey, FormatVersion);
            foreach (var (key, value) in (metadata ?? new Dictionary<string, string>()).OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                if (key is not ("format" or FormatKey))
                {
                    json.WriteString(key, value);
                }
            }

            json.WriteEndObject();
            long offset = 0;
            foreach (var t in ordered)
            {
                long bytes = (long)t.Data.Length * t.DType.ElementSize();
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", t.DType.Name());
                json.WriteStartArray("shape");
                foreach (int d in t.Shape)
                {
                    json.WriteNumberValue(d);
                }

                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }

            json.WriteEndObject();
        }

        int length = buffer.WrittenCount;
        int padded = (length + 8 + 7) / 8 * 8 - 8;
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(length).Fill((byte)' ');
        return header;
    }

    private static void WriteData(Stream stream, SafetensorsTensor t, string path)
    {
        var values = t.Data.Span;
        if (t.DType == SafetensorsDType.F32 && BitConverter.IsLittleEndian)
        {
            stream.Write(MemoryMarshal.AsBytes(values));
            return;
        }

        int size = t.DType.ElementSize();
        byte[] chunk = ArrayPool<byte>.Shared.Rent(ChunkFloats * size);
        try
        {
            for (int start = 0; start < values.Length; start += ChunkFloats)
            {
                var part = values.Slice(start, Math.Min(ChunkFloats, values.Length - start));
                int overflow = SafetensorsDTypes.FromFloat(t.DType, part, chunk);
                if (overflow >= 0)
                {
                    throw new K2Exception(
                        $"{path}: tensor \"{t.Name}\": element {start + overflow} = {part[overflow]} does not fit {t.DType.Name()}");
                }

                stream.Write(chunk, 0, part.Length * size);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }
}
