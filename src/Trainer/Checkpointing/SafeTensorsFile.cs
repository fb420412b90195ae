using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Model;

namespace K2RL.Trainer.Checkpointing;

/// <summary>
/// model.safetensors for a flat parameter buffer: every tensor of the layout as F32 under its HF name.
/// (Minimal reader/writer for the trainer's checkpoints; the model I/O branch owns the general one.)
/// </summary>
public static class SafeTensorsFile
{
    public static void Save(Stream stream, ParameterLayout layout, float[] parameters)
    {
        var header = new JsonObject { ["__metadata__"] = new JsonObject { ["format"] = "pt", ["producer"] = "k2rl" } };
        long offset = 0;
        foreach (var t in layout.Tensors)
        {
            long bytes = t.Length * 4;
            header[t.Name] = new JsonObject
            {
                ["dtype"] = "F32",
                ["shape"] = new JsonArray(t.Shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }

        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int pad = (8 - json.Length % 8) % 8;
        var head = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(head, (ulong)(json.Length + pad));
        stream.Write(head);
        stream.Write(json);
        for (int i = 0; i < pad; i++)
        {
            stream.WriteByte((byte)' ');
        }

        foreach (var t in layout.Tensors)
        {
            stream.Write(MemoryMarshalBytes(t.Of(parameters)));
        }
    }

    /// <summary>Loads every tensor of the layout into <paramref name="parameters"/>; names, dtypes and shapes must match.</summary>
    public static void Load(string path, ParameterLayout layout, float[] parameters)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 8)
        {
            throw new CorruptFileException(path, "too short for a safetensors file");
        }

        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (n > (ulong)bytes.Length - 8)
        {
            throw new CorruptFileException(path, $"header length {n} exceeds the file");
        }

        JsonObject header;
        try
        {
            header = JsonNode.Parse(bytes.AsSpan(8, (int)n)) as JsonObject ?? throw new CorruptFileException(path, "header is not an object");
        }
        catch (JsonException e)
        {
            throw new CorruptFileException(path, $"header is not JSON: {e.Message}");
        }

        long dataStart = 8 + (long)n;
        foreach (var t in layout.Tensors)
        {
            if (header[t.Name] is not JsonObject entry)
            {
                throw new CorruptFileException(path, $"tensor {t.Name} is missing");
            }

            var shape = entry["shape"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
            if (entry["dtype"]?.GetValue<string>() != "F32" || !shape.SequenceEqual(t.Shape))
            {
                throw new CorruptFileException(path, $"tensor {t.Name}: {entry["dtype"]} [{string.Join(", ", shape)}], expected F32 {t.ShapeText}");
            }

            var off = entry["data_offsets"]!.AsArray();
            long begin = dataStart + off[0]!.GetValue<long>(), end = dataStart + off[1]!.GetValue<long>();
            if (end - begin != t.Length * 4 || end > bytes.Length)
            {
                throw new CorruptFileException(path, $"tensor {t.Name}: data offsets out of range");
            }

            var dst = t.Of(parameters);
            for (int i = 0; i < dst.Length; i++)
            {
                dst[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)(begin + i * 4L)));
            }
        }
    }

    private static byte[] MemoryMarshalBytes(ReadOnlySpan<float> data)
    {
        var b = new byte[data.Length * 4];
        for (int i = 0; i < data.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(i * 4), data[i]);
        }

        return b;
    }
}
