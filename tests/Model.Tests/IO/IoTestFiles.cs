using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using K2RL.Model.IO;
using K2RL.Model.Tests.Tokenization;
using K2RL.Tests.Shared;

namespace K2RL.Model.Tests.IO;

/// <summary>Builds safetensors files byte by byte (independently of the writer) and edits existing ones.</summary>
internal static class IoTestFiles
{
    /// <summary>A path inside a test's temporary directory.</summary>
    public static string At(this TempDirectory dir, string name) => System.IO.Path.Combine(dir.Path, name);

    public static ModelConfig TestConfig() =>
        ModelConfig.Load(System.IO.Path.Combine(ExternalTools.RepoRoot(), "configs", "models", "k2-test.json"));

    /// <summary>Parameters with a fixed pseudo-random pattern (padding left zero).</summary>
    public static float[] RandomParameters(ParameterLayout layout, int seed)
    {
        var rng = new Random(seed);
        var p = layout.NewBuffer();
        foreach (var t in layout.Tensors)
        {
            var s = t.Of(p);
            for (int i = 0; i < s.Length; i++)
            {
                s[i] = (float)(rng.NextDouble() * 2 - 1) * 0.1f;
            }
        }

        return p;
    }

    /// <summary>An 8-byte little-endian length, the header text, the data bytes.</summary>
    public static byte[] Compose(string headerJson, ReadOnlySpan<byte> data, long? declaredLength = null)
    {
        byte[] header = Encoding.UTF8.GetBytes(headerJson);
        var file = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)(declaredLength ?? header.Length));
        header.CopyTo(file, 8);
        data.CopyTo(file.AsSpan(8 + header.Length));
        return file;
    }

    public static (JsonObject Header, byte[] Data) Split(string path)
    {
        byte[] file = File.ReadAllBytes(path);
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(file, 8, n))!.AsObject();
        return (header, file[(8 + n)..]);
    }

    /// <summary>Rewrites a safetensors file after letting <paramref name="edit"/> change its header and data.</summary>
    public static void Edit(string path, Func<JsonObject, byte[], byte[]> edit)
    {
        var (header, data) = Split(path);
        data = edit(header, data);
        File.WriteAllBytes(path, Compose(header.ToJsonString(), data));
    }

    public static void EditHeader(string path, Action<JsonObject> edit) =>
        Edit(path, (h, d) =>
        {
            edit(h);
            return d;
        });

    public static JsonObject Entry(JsonObject header, string name) => header[name]!.AsObject();

    public static long[] Offsets(JsonObject header, string name) =>
        Entry(header, name)["data_offsets"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();

    /// <summary>
    /// Splits a checkpoint's model.safetensors into two Hugging Face shards (first half of the tensors, second
    /// half) with a model.safetensors.index.json, and deletes the single file. Returns the index's path.
    /// </summary>
    public static string ShardCheckpoint(string dir)
    {
        string single = System.IO.Path.Combine(dir, ModelCheckpoint.WeightsFile);
        var names = new List<string>();
        var values = new Dictionary<string, (int[] Shape, float[] Data)>();
        using (var reader = SafetensorsReader.Open(single))
        {
            foreach (var e in reader.Header.Entries)
            {
                names.Add(e.Name);
                values[e.Name] = (e.Shape.Select(d => (int)d).ToArray(), reader.ReadTensor(e.Name));
            }
        }

        var weightMap = new JsonObject();
        for (int part = 0; part < 2; part++)
        {
            string shard = $"model-0000{part + 1}-of-00002.safetensors";
            var mine = names.Where((_, i) => i * 2 / names.Count == part).ToList();
            SafetensorsWriter.Write(System.IO.Path.Combine(dir, shard),
                mine.Select(n => new SafetensorsTensor(n, values[n].Shape, values[n].Data)).ToList());
            mine.ForEach(n => weightMap[n] = shard);
        }

        File.Delete(single);
        string index = System.IO.Path.Combine(dir, SafetensorsSet.IndexFile);
        File.WriteAllText(index, new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = weightMap }.ToJsonString());
        return index;
    }

    public static void EditIndex(string index, Action<JsonObject> edit)
    {
        var json = JsonNode.Parse(File.ReadAllText(index))!.AsObject();
        edit(json["weight_map"]!.AsObject());
        File.WriteAllText(index, json.ToJsonString());
    }
}
