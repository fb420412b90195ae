using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace K2RL.Model.IO;

/// <summary>One tensor of a safetensors file: its dtype, shape and byte range in the data section.</summary>
/// <param name="Begin">first byte, relative to the start of the data section (after the header).</param>
/// <param name="End">one past the last byte.</param>
public sealed record SafetensorsEntry(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End)
{
    public long ElementCount { get; } = Shape.Aggregate(1L, (a, b) => a * b);

    public bool ShapeEquals(IReadOnlyList<int> shape) =>
        shape.Count == Shape.Length && Shape.Select((d, i) => d == shape[i]).All(x => x);
}

/// <summary>
/// The parsed and validated header of a safetensors file. Layout on disk: an 8-byte little-endian header
/// length N, N bytes of UTF-8 JSON (<c>{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
/// {string: string}}</c>, possibly padded with spaces), then the data section. Parsing checks everything the
/// format promises: the length fits the file, the JSON is an object of well-formed entries, every dtype is one
/// K2RL can load, each byte range lies in the data section and is exactly dtype size × element count, and the
/// ranges tile the data section with no overlap, gap or trailing bytes.
/// </summary>
public sealed class SafetensorsHeader
{
    /// <summary>The largest header accepted (the reference implementation's limit too).</summary>
    public const long MaxHeaderLength = 100_000_000;

    public const string MetadataKey = "__metadata__";

    private readonly Dictionary<string, SafetensorsEntry> byName;

    private SafetensorsHeader(long headerLength, long dataLength, List<SafetensorsEntry> entries, Dictionary<string, string> metadata)
    {
        HeaderLength = headerLength;
        DataLength = dataLength;
        Entries = entries;
        Metadata = metadata;
        byName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
    }

    /// <summary>N, the JSON header's length in bytes (padding included).</summary>
    public long HeaderLength { get; }

    /// <summary>Byte position of the data section in the file.</summary>
    public long DataStart => 8 + HeaderLength;

    public long DataLength { get; }

    /// <summary>Entries in data order (by begin offset).</summary>
    public IReadOnlyList<SafetensorsEntry> Entries { get; }

    public IReadOnlyDictionary<string, string> Metadata { get; }

    public bool TryGet(string name, out SafetensorsEntry entry) => byName.TryGetValue(name, out entry!);

    public bool Contains(string name) => byName.ContainsKey(name);

    /// <summary>Reads and validates the header of an open file; <paramref name="path"/> names it in errors.</summary>
    public static SafetensorsHeader Read(SafeFileHandle file, string path)
    {
        long fileLength = RandomAccess.GetLength(file);
        if (fileLength < 8)
        {
            throw CheckpointErrors.Header(path, $"the file is {fileLength} bytes, too short for the 8-byte header length");
        }

        Span<byte> prefix = stackalloc byte[8];
        ReadExactly(file, prefix, 0, path);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (n == 0)
        {
            throw CheckpointErrors.Header(path, "the header length is 0 (a header is at least \"{}\")");
        }

        if (n > (ulong)(fileLength - 8))
        {
            throw CheckpointErrors.Header(path, $"the header length {n} is longer than the {fileLength - 8} bytes that follow it");
        }

        if (n > MaxHeaderLength)
        {
            throw CheckpointErrors.Header(path, $"the header length {n} exceeds the {MaxHeaderLength}-byte limit");
        }

        var json = new byte[(int)n];
        ReadExactly(file, json, 8, path);
        return Parse(json, fileLength - 8 - (long)n, (long)n, path);
    }

    /// <summary>Validates header JSON bytes against a data section of <paramref name="dataLength"/> bytes.</summary>
    public static SafetensorsHeader Parse(ReadOnlySpan<byte> json, long dataLength, long headerLength, string path)
    {
        JsonDocument doc;
        try
        {
            // Validate the UTF-8 first: JsonDocument reports bad bytes, but with a less useful message.
            _ = new UTF8Encoding(false, true).GetCharCount(json);
            doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (Exception e) when (e is JsonException or DecoderFallbackException)
        {
            throw CheckpointErrors.Header(path, $"the header is not valid UTF-8 JSON ({e.Message})");
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw CheckpointErrors.Header(path, $"the header must be a JSON object, got {doc.RootElement.ValueKind}");
            }

            var entries = new List<SafetensorsEntry>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                {
                    throw CheckpointErrors.Tensor(path, property.Name, "appears twice in the header");
                }

                if (property.Name == MetadataKey)
                {
                    ReadMetadata(property.Value, metadata, path);
                }
                else
                {
                    entries.Add(ReadEntry(property.Name, property.Value, dataLength, path));
                }
            }

            CheckTiling(entries, dataLength, path);
            return new SafetensorsHeader(headerLength, dataLength, entries, metadata);
        }
    }

    private static void ReadMetadata(JsonElement value, Dictionary<string, string> metadata, string path)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw CheckpointErrors.Header(path, $"\"{MetadataKey}\" must be an object of strings, got {value.ValueKind}");
        }

        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
            {
                throw CheckpointErrors.Header(path, $"\"{MetadataKey}\".\"{item.Name}\" must be a string, got {item.Value.ValueKind}");
            }

            metadata[item.Name] = item.Value.GetString()!;
        }
    }

    private static SafetensorsEntry ReadEntry(string name, JsonElement value, long dataLength, string path)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw CheckpointErrors.Tensor(path, name, $"the header entry must be an object, got {value.ValueKind}");
        }

        if (!value.TryGetProperty("dtype", out var dtypeNode) || dtypeNode.ValueKind != JsonValueKind.String)
        {
            throw CheckpointErrors.Tensor(path, name, "\"dtype\" is missing or not a string");
        }

        string dtypeName = dtypeNode.GetString()!;
        if (!SafetensorsDTypes.TryParse(dtypeName, out var dtype, out bool known))
        {
            throw CheckpointErrors.Tensor(path, name, known
                ? $"dtype \"{dtypeName}\" is not one K2RL loads as weights (F32, BF16, F16)"
                : $"unknown dtype \"{dtypeName}\"");
        }

        long[] shape = ReadInts(name, value, "shape", path);
        long[] offsets = ReadInts(name, value, "data_offsets", path);
        if (offsets.Length != 2)
        {
            throw CheckpointErrors.Tensor(path, name, $"\"data_offsets\" must be [begin, end], got {offsets.Length} numbers");
        }

        long elements = 1;
        foreach (long d in shape)
        {
            elements = d == 0 ? 0 : elements > long.MaxValue / d ? -1 : elements * d;
            if (elements < 0)
            {
                throw CheckpointErrors.Tensor(path, name, $"shape {CheckpointErrors.Shape(shape)} has too many elements");
            }
        }

        long begin = offsets[0], end = offsets[1];
        if (begin > end)
        {
            throw CheckpointErrors.Tensor(path, name, $"data_offsets [{begin}, {end}] end before they begin");
        }

        if (end > dataLength)
        {
            throw CheckpointErrors.Tensor(path, name,
                $"data_offsets [{begin}, {end}] run past the end of the data section ({dataLength} bytes; the file may be truncated)");
        }

        int size = dtype.ElementSize();
        if (elements > long.MaxValue / size || end - begin != elements * size)
        {
            throw CheckpointErrors.Tensor(path, name,
                $"data_offsets [{begin}, {end}] hold {end - begin} bytes, but {dtypeName} × {CheckpointErrors.Shape(shape)} needs {elements}×{size} = {elements * size}");
        }

        return new SafetensorsEntry(name, dtype, shape, begin, end);
    }

    private static long[] ReadInts(string name, JsonElement entry, string key, string path)
    {
        if (!entry.TryGetProperty(key, out var node) || node.ValueKind != JsonValueKind.Array)
        {
            throw CheckpointErrors.Tensor(path, name, $"\"{key}\" is missing or not an array");
        }

        var values = new long[node.GetArrayLength()];
        int i = 0;
        foreach (var item in node.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long v) || v < 0)
            {
                throw CheckpointErrors.Tensor(path, name, $"\"{key}\" must hold non-negative integers, got {item.GetRawText()}");
            }

            values[i++] = v;
        }

        return values;
    }

    /// <summary>Sorts the entries by offset and checks that they tile [0, dataLength) exactly.</summary>
    private static void CheckTiling(List<SafetensorsEntry> entries, long dataLength, string path)
    {
        entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        long cursor = 0;
        SafetensorsEntry? previous = null;
        foreach (var e in entries)
        {
            if (e.Begin < cursor)
            {
                throw CheckpointErrors.Tensor(path, e.Name,
                    $"data_offsets [{e.Begin}, {e.End}] overlap tensor \"{previous!.Name}\" [{previous.Begin}, {previous.End}]");
            }

            if (e.Begin > cursor)
            {
                throw CheckpointErrors.Tensor(path, e.Name,
                    $"data_offsets [{e.Begin}, {e.End}] leave {e.Begin - cursor} bytes before it that belong to no tensor");
            }

            cursor = e.End;
            previous = e;
        }

        if (cursor != dataLength)
        {
            throw CheckpointErrors.File(path,
                $"{dataLength - cursor} bytes at the end of the data section belong to no tensor (data ends at {cursor} of {dataLength})");
        }
    }

    internal static void ReadExactly(SafeFileHandle file, Span<byte> buffer, long offset, string path)
    {
        while (buffer.Length > 0)
        {
            int n = RandomAccess.Read(file, buffer, offset);
            if (n <= 0)
            {
                throw CheckpointErrors.File(path, $"unexpected end of file at byte {offset} (the file changed or is truncated)");
            }

            buffer = buffer[n..];
            offset += n;
        }
    }
}
