using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using K2RL.Tests.Shared;

namespace K2RL.Model.Tests.IO;

/// <summary>A temporary directory deleted after the test.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "k2rl-io-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string this[string name] => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Builds safetensors files byte by byte (independently of the writer) and edits existing ones.</summary>
public static class IoTestFiles
{
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
}
