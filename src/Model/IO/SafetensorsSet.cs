using System.Text.Json;

namespace K2RL.Model.IO;

/// <summary>
/// A model's tensors in one or more validated safetensors files: a single <c>model.safetensors</c>, or
/// Hugging Face shards listed by <c>model.safetensors.index.json</c> (<c>{"metadata": {...}, "weight_map":
/// {tensor: shard file}}</c>). Every shard's header is validated on open, and the index must agree with the
/// shards exactly: each tensor in one shard only, and in the shard the index names.
/// </summary>
public sealed class SafetensorsSet : IDisposable
{
    public const string IndexFile = "model.safetensors.index.json";

    private readonly List<SafetensorsReader> readers;
    private readonly bool ownsReaders;
    private readonly Dictionary<string, (SafetensorsReader Reader, SafetensorsEntry Entry)> tensors = new(StringComparer.Ordinal);

    private SafetensorsSet(List<SafetensorsReader> readers, bool ownsReaders)
    {
        this.readers = readers;
        this.ownsReaders = ownsReaders;
        foreach (var reader in readers)
        {
            foreach (var entry in reader.Header.Entries)
            {
                if (!tensors.TryAdd(entry.Name, (reader, entry)))
                {
                    throw CheckpointErrors.Tensor(reader.Path, entry.Name, $"is also in {tensors[entry.Name].Reader.Path}");
                }
            }
        }
    }

    /// <summary>Where the tensors come from (one path, or the index file).</summary>
    public string Source { get; private init; } = "";

    public IEnumerable<string> Names => tensors.Keys;

    public bool Contains(string name) => tensors.ContainsKey(name);

    public long[]? ShapeOf(string name) => tensors.TryGetValue(name, out var t) ? t.Entry.Shape : null;

    /// <summary>The narrowest dtype the weights (routing biases aside) are stored in.</summary>
    public SafetensorsDType StoredDType => tensors.Values
        .Where(t => !t.Entry.Name.EndsWith(".e_score_correction_bias", StringComparison.Ordinal))
        .Select(t => t.Entry.DType)
        .FirstOrDefault(d => d != SafetensorsDType.F32, SafetensorsDType.F32);

    /// <summary>A view over one open file (not disposed with the set).</summary>
    public static SafetensorsSet Of(SafetensorsReader reader) => new([reader], ownsReaders: false) { Source = reader.Path };

    public static SafetensorsSet OpenFile(string path)
    {
        var reader = SafetensorsReader.Open(path);
        return new SafetensorsSet([reader], ownsReaders: true) { Source = path };
    }

    /// <summary>Opens the shards listed by a Hugging Face index file, checking the index against them.</summary>
    public static SafetensorsSet OpenIndex(string indexPath)
    {
        var weightMap = ReadWeightMap(indexPath);
        string dir = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        var readers = new List<SafetensorsReader>();
        try
        {
            foreach (string shard in weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
            {
                readers.Add(SafetensorsReader.Open(Path.Combine(dir, shard)));
            }

            var set = new SafetensorsSet(readers, ownsReaders: true) { Source = indexPath };
            foreach (var (name, shard) in weightMap)
            {
                if (!set.tensors.TryGetValue(name, out var t))
                {
                    throw CheckpointErrors.Tensor(indexPath, name, $"the index maps it to {shard}, which does not hold it");
                }

                if (Path.GetFileName(t.Reader.Path) != shard)
                {
                    throw CheckpointErrors.Tensor(indexPath, name, $"the index maps it to {shard}, but it is in {Path.GetFileName(t.Reader.Path)}");
                }
            }

            foreach (var (name, t) in set.tensors)
            {
                if (!weightMap.ContainsKey(name))
                {
                    throw CheckpointErrors.Tensor(t.Reader.Path, name, $"is not listed in {IndexFile}");
                }
            }

            return set;
        }
        catch
        {
            readers.ForEach(r => r.Dispose());
            throw;
        }
    }

    /// <summary>A checkpoint directory's weights: model.safetensors, else the shards of model.safetensors.index.json.</summary>
    public static SafetensorsSet OpenCheckpoint(string dir)
    {
        string single = Path.Combine(dir, ModelCheckpoint.WeightsFile);
        string index = Path.Combine(dir, IndexFile);
        return File.Exists(single) || !File.Exists(index) ? OpenFile(single) : OpenIndex(index);
    }

    /// <summary>Checks that the set holds exactly the layout's tensors with the layout's shapes.</summary>
    public void CheckMatches(ParameterLayout layout)
    {
        foreach (var slot in layout.Tensors)
        {
            if (!tensors.TryGetValue(slot.Name, out var t))
            {
                throw CheckpointErrors.Tensor(Source, slot.Name, $"missing (the model needs it with shape {slot.ShapeText})");
            }

            if (!t.Entry.ShapeEquals(slot.Shape))
            {
                throw CheckpointErrors.Tensor(t.Reader.Path, slot.Name,
                    $"has shape {CheckpointErrors.Shape(t.Entry.Shape)}, the model needs {slot.ShapeText}");
            }
        }

        foreach (var (name, t) in tensors)
        {
            if (!layout.Contains(name))
            {
                throw CheckpointErrors.Tensor(t.Reader.Path, name,
                    $"is not part of this model (shape {CheckpointErrors.Shape(t.Entry.Shape)}); the config and the weights disagree");
            }
        }
    }

    /// <summary>
    /// Fills a <paramref name="layout"/>-sized buffer. The set must hold exactly the layout's tensors with the
    /// layout's shapes (any of F32, BF16, F16), and every value must be finite; otherwise the error names the
    /// missing, extra or mis-shaped tensor, or the first non-finite value.
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
            var (reader, entry) = tensors[slot.Name];
            var span = slot.Of(buffer);
            reader.ReadInto(entry, span);
            int bad = IndexOfNonFinite(span);
            if (bad >= 0)
            {
                throw CheckpointErrors.Tensor(reader.Path, slot.Name, $"element {bad} is {span[bad]} (weights must be finite)");
            }
        }
    }

    private static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        if (!File.Exists(indexPath))
        {
            throw CheckpointErrors.File(indexPath, "file not found");
        }

        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath), new JsonDocumentOptions { AllowDuplicateProperties = false });
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            {
                throw CheckpointErrors.File(indexPath, "\"weight_map\" is missing or not an object of tensor → shard file");
            }

            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var item in map.EnumerateObject())
            {
                string? shard = item.Value.ValueKind == JsonValueKind.String ? item.Value.GetString() : null;
                if (string.IsNullOrEmpty(shard) || shard != Path.GetFileName(shard) || shard is "." or "..")
                {
                    throw CheckpointErrors.Tensor(indexPath, item.Name, $"the shard {item.Value.GetRawText()} must be a file name in the checkpoint directory");
                }

                if (!result.TryAdd(item.Name, shard))
                {
                    throw CheckpointErrors.Tensor(indexPath, item.Name, "appears twice in \"weight_map\"");
                }
            }

            return result;
        }
        catch (JsonException e)
        {
            throw CheckpointErrors.File(indexPath, $"not valid JSON ({e.Message})");
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

    public void Dispose()
    {
        if (ownsReaders)
        {
            readers.ForEach(r => r.Dispose());
        }
    }
}
