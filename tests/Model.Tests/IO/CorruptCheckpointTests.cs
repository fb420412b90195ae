using System.Buffers.Binary;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Model.IO;
using K2RL.Model.Tests.Tokenization;

namespace K2RL.Model.Tests.IO;

/// <summary>
/// Every way a checkpoint can be broken gives a <see cref="K2Exception"/> that names the tensor or key
/// (never a crash, never a silently wrong model). Each test writes a good checkpoint, breaks one thing, loads.
/// </summary>
public sealed class CorruptCheckpointTests : IDisposable
{
    private const string Embed = "model.embed_tokens.weight";
    private const string QB = "model.layers.0.self_attn.q_b_proj.weight";

    private readonly TempDirectory dir = new();
    private readonly ModelConfig config = IoTestFiles.TestConfig();

    public CorruptCheckpointTests() =>
        ModelCheckpoint.Save(dir.Path, config, IoTestFiles.RandomParameters(new ParameterLayout(config), 5));

    private string Weights => dir.At(ModelCheckpoint.WeightsFile);

    private string ConfigPath => dir.At(ModelCheckpoint.ConfigFile);

    public void Dispose() => dir.Dispose();

    private T LoadFails<T>(params string[] expected) where T : K2Exception
    {
        var e = Assert.Throws<T>(() => ModelCheckpoint.Load(dir.Path));
        foreach (string s in expected)
        {
            Assert.Contains(s, e.Message);
        }

        return e;
    }

    private void WriteRaw(byte[] bytes) => File.WriteAllBytes(Weights, bytes);

    // ------------------------------------------------------------------ the header itself

    [Fact]
    public void FileTooShortForTheLength()
    {
        WriteRaw([1, 2, 3]);
        LoadFails<CorruptFileException>("model.safetensors", "too short");
    }

    [Fact]
    public void HeaderLengthLongerThanTheFile()
    {
        byte[] bytes = File.ReadAllBytes(Weights);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)bytes.Length);
        WriteRaw(bytes);
        LoadFails<CorruptFileException>("header length", "longer than");
    }

    [Fact]
    public void HeaderLengthHuge()
    {
        byte[] bytes = File.ReadAllBytes(Weights);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, ulong.MaxValue);
        WriteRaw(bytes);
        LoadFails<CorruptFileException>("header length");
    }

    [Fact]
    public void HeaderLengthZero()
    {
        byte[] bytes = File.ReadAllBytes(Weights);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 0);
        WriteRaw(bytes);
        LoadFails<CorruptFileException>("header length is 0");
    }

    [Fact]
    public void HeaderLengthOffByOneCutsTheJson()
    {
        byte[] bytes = File.ReadAllBytes(Weights);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        string header = System.Text.Encoding.UTF8.GetString(bytes, 8, (int)n).TrimEnd(' ');
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length - 1);     // drops the closing brace
        WriteRaw(bytes);
        LoadFails<CorruptFileException>("not valid UTF-8 JSON");
    }

    [Theory]
    [InlineData("this is not json")]
    [InlineData("[1, 2, 3]")]
    [InlineData("{\"a\": ")]
    public void HeaderNotAJsonObject(string header)
    {
        WriteRaw(IoTestFiles.Compose(header, new byte[16]));
        LoadFails<CorruptFileException>("malformed safetensors header");
    }

    [Fact]
    public void HeaderNotUtf8()
    {
        var bytes = IoTestFiles.Compose("{\"a\":1}", []);
        bytes[10] = 0xFF;
        WriteRaw(bytes);
        LoadFails<CorruptFileException>("UTF-8");
    }

    [Fact]
    public void MetadataNotStrings()
    {
        IoTestFiles.EditHeader(Weights, h => h["__metadata__"] = new JsonObject { ["format"] = 3 });
        LoadFails<CorruptFileException>("__metadata__", "format");
    }

    [Fact]
    public void NewerK2rlFormatVersion()
    {
        IoTestFiles.EditHeader(Weights, h => h["__metadata__"]!["k2rl_format"] = "2");
        LoadFails<CorruptFileException>("k2rl_format", "\"2\"", "reads version 1");
    }

    [Fact]
    public void DuplicateTensorName()
    {
        var (header, data) = IoTestFiles.Split(Weights);
        string json = header.ToJsonString();
        string entry = "\"" + Embed + "\":" + header[Embed]!.ToJsonString();
        WriteRaw(IoTestFiles.Compose(json[..^1] + "," + entry + "}", data));
        LoadFails<CorruptFileException>(Embed, "twice");
    }

    // ------------------------------------------------------------------ entries

    [Theory]
    [InlineData("F33", "unknown dtype \"F33\"")]
    [InlineData("", "unknown dtype")]
    [InlineData("I64", "not one K2RL loads")]
    [InlineData("F8_E4M3", "not one K2RL loads")]
    public void UnknownOrUnsupportedDtype(string dtype, string expected)
    {
        IoTestFiles.EditHeader(Weights, h => IoTestFiles.Entry(h, QB)["dtype"] = dtype);
        LoadFails<CorruptFileException>(QB, expected);
    }

    [Fact]
    public void DtypeNotAString()
    {
        IoTestFiles.EditHeader(Weights, h => IoTestFiles.Entry(h, QB)["dtype"] = 4);
        LoadFails<CorruptFileException>(QB, "dtype");
    }

    [Fact]
    public void DtypeChangedSoTheByteRangeNoLongerMatches()
    {
        // F32 data relabelled BF16: same shape, but the range holds twice the bytes BF16 needs.
        IoTestFiles.EditHeader(Weights, h => IoTestFiles.Entry(h, QB)["dtype"] = "BF16");
        LoadFails<CorruptFileException>(QB, "needs");
    }

    [Fact]
    public void ByteRangeDoesNotMatchDtypeTimesShape()
    {
        IoTestFiles.EditHeader(Weights, h =>
        {
            var shape = IoTestFiles.Entry(h, QB)["shape"]!.AsArray();
            shape[0] = shape[0]!.GetValue<int>() - 1;
        });
        LoadFails<CorruptFileException>(QB, "hold", "needs");
    }

    [Fact]
    public void OverlappingOffsets()
    {
        // Shift one tensor's range back by 4 bytes into its predecessor (same length, so only the overlap is wrong).
        IoTestFiles.EditHeader(Weights, h =>
        {
            long[] o = IoTestFiles.Offsets(h, QB);
            IoTestFiles.Entry(h, QB)["data_offsets"] = new JsonArray(o[0] - 4, o[1] - 4);
        });
        LoadFails<CorruptFileException>(QB, "overlap");
    }

    [Fact]
    public void TwoTensorsSharingOneRange()
    {
        IoTestFiles.EditHeader(Weights, h =>
        {
            var first = h.Where(kv => kv.Key != "__metadata__").First(kv => IoTestFiles.Offsets(h, kv.Key)[0] == 0).Key;
            var second = h.Where(kv => kv.Key != "__metadata__" && kv.Key != first)
                .First(kv => IoTestFiles.Entry(h, kv.Key)["shape"]!.ToJsonString() == IoTestFiles.Entry(h, first)["shape"]!.ToJsonString()).Key;
            IoTestFiles.Entry(h, second)["data_offsets"] = IoTestFiles.Entry(h, first)["data_offsets"]!.DeepClone();
        });
        LoadFails<CorruptFileException>("overlap");
    }

    [Fact]
    public void OffsetsPastTheEndOfTheData()
    {
        IoTestFiles.EditHeader(Weights, h =>
        {
            long[] o = IoTestFiles.Offsets(h, "lm_head.weight");
            IoTestFiles.Entry(h, "lm_head.weight")["data_offsets"] = new JsonArray(o[0] + 1_000_000, o[1] + 1_000_000);
        });
        LoadFails<CorruptFileException>("lm_head.weight", "past the end");
    }

    [Fact]
    public void TruncatedFile()
    {
        byte[] bytes = File.ReadAllBytes(Weights);
        WriteRaw(bytes[..^100]);
        LoadFails<CorruptFileException>("past the end", "truncated");
    }

    [Fact]
    public void TrailingBytesAfterTheLastTensor()
    {
        IoTestFiles.Edit(Weights, (h, d) => [.. d, 1, 2, 3, 4]);
        LoadFails<CorruptFileException>("belong to no tensor");
    }

    [Fact]
    public void OffsetsBackwards()
    {
        IoTestFiles.EditHeader(Weights, h =>
        {
            long[] o = IoTestFiles.Offsets(h, QB);
            IoTestFiles.Entry(h, QB)["data_offsets"] = new JsonArray(o[1], o[0]);
        });
        LoadFails<CorruptFileException>(QB, "end before they begin");
    }

    [Theory]
    [InlineData("data_offsets", "[0]")]
    [InlineData("data_offsets", "[-4, 8]")]
    [InlineData("data_offsets", "\"0-8\"")]
    [InlineData("shape", "[24.5, 4]")]
    [InlineData("shape", "[-1, 4]")]
    [InlineData("shape", "null")]
    public void MalformedShapeOrOffsets(string key, string value)
    {
        IoTestFiles.EditHeader(Weights, h => IoTestFiles.Entry(h, QB)[key] = JsonNode.Parse(value));
        LoadFails<CorruptFileException>(QB, key);
    }

    // ------------------------------------------------------------------ tensors against the model

    [Fact]
    public void MissingTensor()
    {
        const string name = "model.layers.1.mlp.experts.3.up_proj.weight";
        IoTestFiles.Edit(Weights, (h, d) => RemoveTensor(h, d, name));
        LoadFails<CorruptFileException>(name, "missing");
    }

    [Fact]
    public void MissingRoutingBias()
    {
        const string name = "model.layers.1.mlp.gate.e_score_correction_bias";
        IoTestFiles.Edit(Weights, (h, d) => RemoveTensor(h, d, name));
        LoadFails<CorruptFileException>(name, "missing");
    }

    [Fact]
    public void ExtraTensor()
    {
        IoTestFiles.Edit(Weights, (h, d) =>
        {
            h["model.layers.0.self_attn.q_proj.bias"] = new JsonObject
            {
                ["dtype"] = "F32",
                ["shape"] = new JsonArray(3),
                ["data_offsets"] = new JsonArray(d.Length, d.Length + 12),
            };
            return [.. d, .. new byte[12]];
        });
        LoadFails<CorruptFileException>("model.layers.0.self_attn.q_proj.bias", "not part of this model");
    }

    [Fact]
    public void TransposedTensor()
    {
        const string name = "model.layers.1.mlp.experts.0.down_proj.weight";
        IoTestFiles.EditHeader(Weights, h =>
        {
            var shape = IoTestFiles.Entry(h, name)["shape"]!.AsArray();
            IoTestFiles.Entry(h, name)["shape"] = new JsonArray(shape[1]!.GetValue<int>(), shape[0]!.GetValue<int>());
        });
        LoadFails<CorruptFileException>(name, "has shape [16, 32]", "needs [32, 16]");
    }

    [Fact]
    public void NonFiniteWeight()
    {
        IoTestFiles.Edit(Weights, (h, d) =>
        {
            long begin = IoTestFiles.Offsets(h, QB)[0];
            BinaryPrimitives.WriteSingleLittleEndian(d.AsSpan((int)begin + 4 * 7), float.NaN);
            return d;
        });
        LoadFails<CorruptFileException>(QB, "element 7", "NaN");
    }

    // ------------------------------------------------------------------ config.json against the tensors

    [Theory]
    [InlineData("hidden_size", 48)]
    [InlineData("vocab_size", 65)]
    [InlineData("num_hidden_layers", 3)]
    [InlineData("num_attention_heads", 4)]
    [InlineData("q_lora_rank", 16)]
    [InlineData("kv_lora_rank", 8)]
    [InlineData("qk_nope_head_dim", 4)]
    [InlineData("v_head_dim", 16)]
    [InlineData("qk_rope_head_dim", 8)]
    [InlineData("intermediate_size", 40)]
    [InlineData("moe_intermediate_size", 8)]
    [InlineData("n_routed_experts", 6)]
    [InlineData("n_shared_experts", 2)]
    [InlineData("first_k_dense_replace", 0)]
    public void ConfigThatDoesNotMatchTheTensorsNamesTheKey(string key, int value)
    {
        var json = JsonNode.Parse(File.ReadAllText(ConfigPath))!.AsObject();
        json[key] = value;
        File.WriteAllText(ConfigPath, json.ToJsonString());
        var e = LoadFails<CorruptFileException>("config.json", $"\"{key}\" is {value}", "does not match the weights");
        Assert.Equal(ConfigPath, e.Path);
    }

    [Fact]
    public void ConfigSaysTiedEmbeddingsButTheHeadIsThere()
    {
        var json = JsonNode.Parse(File.ReadAllText(ConfigPath))!.AsObject();
        json["tie_word_embeddings"] = true;
        File.WriteAllText(ConfigPath, json.ToJsonString());
        LoadFails<CorruptFileException>("\"tie_word_embeddings\" is true", "lm_head.weight");
    }

    [Fact]
    public void InvalidConfigNamesTheKey()
    {
        var json = JsonNode.Parse(File.ReadAllText(ConfigPath))!.AsObject();
        json.Remove("hidden_size");
        File.WriteAllText(ConfigPath, json.ToJsonString());
        LoadFails<ConfigException>("config.json", "hidden_size");
    }

    [Fact]
    public void MissingFiles()
    {
        File.Delete(Weights);
        LoadFails<CorruptFileException>("model.safetensors", "not found");
        File.Delete(ConfigPath);
        LoadFails<CorruptFileException>("config.json", "missing");
        Assert.Contains("does not exist", Assert.Throws<CorruptFileException>(() => ModelCheckpoint.Load(dir.At("nope"))).Message);
    }

    // ------------------------------------------------------------------ sharded checkpoints (index + shards)

    [Fact]
    public void IndexMapsATensorToTheWrongShard()
    {
        string index = IoTestFiles.ShardCheckpoint(dir.Path);
        IoTestFiles.EditIndex(index, m => m[Embed] = "model-00002-of-00002.safetensors");
        LoadFails<CorruptFileException>(SafetensorsSet.IndexFile, Embed, "but it is in model-00001-of-00002.safetensors");
    }

    [Fact]
    public void IndexLeavesATensorOut()
    {
        string index = IoTestFiles.ShardCheckpoint(dir.Path);
        IoTestFiles.EditIndex(index, m => m.Remove(QB));
        LoadFails<CorruptFileException>(QB, "not listed");
    }

    [Fact]
    public void IndexNamesAShardOutsideTheDirectory()
    {
        string index = IoTestFiles.ShardCheckpoint(dir.Path);
        IoTestFiles.EditIndex(index, m => m[QB] = "../model-00001-of-00002.safetensors");
        LoadFails<CorruptFileException>(QB, "must be a file name");
    }

    [Fact]
    public void ShardMissing()
    {
        IoTestFiles.ShardCheckpoint(dir.Path);
        File.Delete(dir.At("model-00002-of-00002.safetensors"));
        LoadFails<CorruptFileException>("model-00002-of-00002.safetensors", "not found");
    }

    [Fact]
    public void TensorInTwoShards()
    {
        string index = IoTestFiles.ShardCheckpoint(dir.Path);
        string second = dir.At("model-00002-of-00002.safetensors");
        IoTestFiles.Edit(second, (h, d) =>
        {
            h[Embed] = new JsonObject
            {
                ["dtype"] = "F32",
                ["shape"] = new JsonArray(64, 32),
                ["data_offsets"] = new JsonArray(d.Length, d.Length + 64 * 32 * 4),
            };
            return [.. d, .. new byte[64 * 32 * 4]];
        });
        LoadFails<CorruptFileException>(Embed, "is also in");
    }

    [Fact]
    public void IndexNotJson()
    {
        string index = IoTestFiles.ShardCheckpoint(dir.Path);
        File.WriteAllText(index, "{\"weight_map\": [");
        LoadFails<CorruptFileException>(SafetensorsSet.IndexFile, "not valid JSON");
    }

    [Fact]
    public void RandomHeaderDamageIsAlwaysAnErrorNeverACrash()
    {
        // Fixed seed: flip one byte of the length prefix or header JSON, or cut the file short, 400 times.
        // Each load must either succeed (a harmless change, e.g. in the padding) or fail with a K2Exception.
        byte[] good = File.ReadAllBytes(Weights);
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(good);
        var rng = new Random(12345);
        int failures = 0;
        for (int trial = 0; trial < 400; trial++)
        {
            byte[] bad = (byte[])good.Clone();
            if (trial % 4 == 3)
            {
                bad = bad[..rng.Next(0, good.Length)];
            }
            else
            {
                bad[rng.Next(0, headerEnd)] = (byte)rng.Next(0, 256);
            }

            WriteRaw(bad);
            try
            {
                ModelCheckpoint.Load(dir.Path);
            }
            catch (K2Exception)
            {
                failures++;
            }
            catch (Exception e)
            {
                Assert.Fail($"trial {trial}: {e.GetType().Name} instead of a K2Exception: {e.Message}");
            }
        }

        Assert.True(failures > 300, $"only {failures} of 400 damaged files were refused");
    }

    /// <summary>Drops a tensor's entry and bytes, shifting the later ranges down so the rest stays well-formed.</summary>
    private static byte[] RemoveTensor(JsonObject h, byte[] d, string name)
    {
        long[] o = IoTestFiles.Offsets(h, name);
        long size = o[1] - o[0];
        h.Remove(name);
        foreach (var (key, _) in h.ToList())
        {
            if (key == "__metadata__")
            {
                continue;
            }

            long[] other = IoTestFiles.Offsets(h, key);
            if (other[0] >= o[1])
            {
                IoTestFiles.Entry(h, key)["data_offsets"] = new JsonArray(other[0] - size, other[1] - size);
            }
        }

        return [.. d[..(int)o[0]], .. d[(int)o[1]..]];
    }
}
