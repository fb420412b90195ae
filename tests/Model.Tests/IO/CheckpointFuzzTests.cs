using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using K2RL.Model.IO;
using K2RL.Model.Tests.Tokenization;
using K2RL.Model.Tokenization;
using K2RL.Tests.Shared;

namespace K2RL.Model.Tests.IO;

/// <summary>
/// Fuzzes checkpoint directories (issue 14): config.json, the safetensors header and body, the tokenizer files, the
/// sharded index and the MANIFEST, one to three edits per case from a fixed seed. Every case must load (and then
/// encode a probe text) or be refused with a K2RL error naming a file of the directory, within 10 s and 256 MiB of
/// allocation, with no unhandled exception.
/// </summary>
public sealed class CheckpointFuzzTests : IDisposable
{
    private static readonly (string, string)[] UnsupportedConfig =
    [
        ("hidden_act", "\"gelu\""), ("attention_bias", "true"), ("mlp_bias", "true"), ("topk_method", "\"greedy\""),
        ("moe_layer_freq", "0"), ("moe_layer_freq", "-3"), ("rms_norm_eps", "1e9"), ("rms_norm_eps", "0"), ("rope_theta", "-1"),
        ("rope_theta", "1e300"), ("routed_scaling_factor", "1e30"), ("pretraining_tp", "2"),
        ("quantization_config", "{\"quant_method\": \"fp8\"}"), ("scoring_func", "\"softmax\""), ("model_type", "\"llama\""),
        ("rope_scaling", "{\"type\": \"linear\", \"factor\": 2}"), ("rope_scaling", "{\"type\": 7}"),
        ("rope_scaling", "{\"type\": \"yarn\", \"factor\": \"x\"}"), ("rope_scaling", "{\"type\": \"yarn\", \"original_max_position_embeddings\": 1e300}"),
        ("n_routed_experts", "1000000000"), ("num_hidden_layers", "1000000"), ("hidden_size", "2147483647"), ("vocab_size", "100000000"),
    ];

    private static readonly string[] EvilPatterns = ["(a+)+$", "(\\s*)*x", "(.*a){20}", "((a|aa)+)+b", "(", "[", "(?<n>a)\\k<m>", "(\\p{L}+\\p{L}+)+!"];

    private readonly TempDirectory root = new();
    private readonly string baseDir;

    public CheckpointFuzzTests()
    {
        baseDir = root.At("base");
        var config = IoTestFiles.TestConfig() with { VocabSize = 272 };
        var layout = new ParameterLayout(config);
        ModelCheckpoint.Save(baseDir, config, IoTestFiles.RandomParameters(layout, 3), BpeTokenizer.ByteLevel());
    }

    public void Dispose() => root.Dispose();

    [Fact]
    public void EveryCaseLoadsOrIsRefusedNamingTheFile()
    {
        int cases = Fuzz.Cases(1000), seed = Fuzz.Seed;
        var failures = new List<string>();
        int loaded = 0;
        for (int c = 0; c < cases && failures.Count < 10; c++)
        {
            var rng = Fuzz.Case(c, "checkpoint");
            string dir = root.At($"case-{c}");
            Copy(baseDir, dir);
            var edits = new List<string>();
            try
            {
                if (rng.Next(4) == 0)
                {
                    IoTestFiles.ShardCheckpoint(dir);
                    edits.Add("sharded");
                }

                for (int e = 0, n = 1 + rng.Next(3); e < n; e++)
                {
                    edits.Add(Mutate(dir, rng));
                }

                if (rng.Next(10) == 0)
                {
                    Checksums.WriteManifest(dir);
                    edits.Add("manifest");
                    if (rng.Next(2) == 0)
                    {
                        edits.Add(Mutate(dir, rng));
                    }
                }
            }
            catch (Exception e)      // an edit that a previous edit made impossible (the fuzzer's own parsing); the case goes on as it is
            {
                edits.Add("(edit stopped: " + e.GetType().Name + ")");
            }

            bool ok = false;
            string? problem = Fuzz.Check(() =>
            {
                var checkpoint = ModelCheckpoint.Load(dir);
                (checkpoint.Tokenizer ?? BpeTokenizer.ByteLevel()).Encode("What is 12 + 34? aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!  中文 é\n\n");
                ok = true;
            }, dir, TimeSpan.FromSeconds(10), 256L << 20);
            if (problem is not null)
            {
                failures.Add($"case {c} (seed {seed}; {string.Join(", ", edits)}): {problem}");
            }

            loaded += ok ? 1 : 0;
            Directory.Delete(dir, recursive: true);
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.InRange(loaded, 1, cases - 1);       // some edits are harmless (a float's last digit), most are refused
    }

    /// <summary>One edit to one file of the checkpoint; returns what it did.</summary>
    private static string Mutate(string dir, Random rng)
    {
        string config = Path.Combine(dir, ModelCheckpoint.ConfigFile);
        string index = Path.Combine(dir, SafetensorsSet.IndexFile);
        string[] weights = Directory.GetFiles(dir, "*.safetensors");
        string tokConfig = Path.Combine(dir, BpeTokenizer.ConfigFileName), ranks = Path.Combine(dir, BpeTokenizer.RankFileName);
        switch (rng.Next(9))
        {
            case 0:
            case 1:
                File.WriteAllText(config, Fuzz.MutateJson(File.ReadAllText(config), rng, UnsupportedConfig));
                return "config.json";
            case 2:
            {
                string file = weights[rng.Next(weights.Length)];
                MutateHeader(file, rng);
                return Path.GetFileName(file) + " header";
            }

            case 3:
            {
                string file = weights[rng.Next(weights.Length)];
                File.WriteAllBytes(file, MutateBody(File.ReadAllBytes(file), rng));
                return Path.GetFileName(file) + " bytes";
            }

            case 4:
                if (rng.Next(3) == 0)
                {
                    var json = JsonNode.Parse(File.ReadAllText(tokConfig))!.AsObject();
                    json["pattern"] = EvilPatterns[rng.Next(EvilPatterns.Length)];
                    File.WriteAllText(tokConfig, json.ToJsonString());
                    return "tokenizer pattern";
                }

                File.WriteAllText(tokConfig, Fuzz.MutateJson(File.ReadAllText(tokConfig), rng));
                return "tokenizer_config.json";
            case 5:
                File.WriteAllText(ranks, MutateLines(File.ReadAllText(ranks), rng));
                return "tiktoken.model";
            case 6 when File.Exists(index):
                File.WriteAllText(index, rng.Next(2) == 0
                    ? Fuzz.MutateJson(File.ReadAllText(index), rng, [("x", "\"../../etc/passwd\""), ("y", "\"/dev/zero\""), ("z", "\"missing.safetensors\"")])
                    : Fuzz.MutateText(File.ReadAllText(index), rng));
                return "index";
            case 7:
                File.Delete(Path.Combine(dir, new[] { ModelCheckpoint.ConfigFile, BpeTokenizer.RankFileName, BpeTokenizer.ConfigFileName }[rng.Next(3)]));
                return "a file deleted";
            default:
                string manifest = Path.Combine(dir, Checksums.ManifestName);
                File.WriteAllText(manifest, File.Exists(manifest) ? Fuzz.MutateText(File.ReadAllText(manifest), rng) : "not a manifest\n");
                return "MANIFEST";
        }
    }

    /// <summary>Edits a safetensors header: its length prefix, or an entry's dtype, shape or offsets, or its JSON text.</summary>
    private static void MutateHeader(string file, Random rng)
    {
        byte[] bytes = File.ReadAllBytes(file);
        if (rng.Next(5) == 0)
        {
            long[] lengths = [0, 1, 7, long.MaxValue, (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes) + rng.Next(-9, 9), 1L << 40];
            BinaryPrimitives.WriteInt64LittleEndian(bytes, lengths[rng.Next(lengths.Length)]);
            File.WriteAllBytes(file, bytes);
            return;
        }

        var (header, data) = IoTestFiles.Split(file);
        var names = header.Select(p => p.Key).Where(k => k != "__metadata__").ToList();
        var entry = header[names[rng.Next(names.Count)]]!.AsObject();
        switch (rng.Next(5))
        {
            case 0:
                entry["dtype"] = new[] { "F64", "I64", "BF16", "F16", "U8", "F8_E4M3", "x", "" }[rng.Next(8)];
                break;
            case 1:
                entry["shape"] = JsonNode.Parse(new[] { "[]", "[-1, 4]", "[2147483648, 2]", "[0]", "[1, 1, 1, 1]", "[4611686018427387904, 4]", "\"x\"" }[rng.Next(7)]);
                break;
            case 2:
                var offsets = entry["data_offsets"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
                entry["data_offsets"] = JsonNode.Parse(new[]
                {
                    $"[{offsets[1]}, {offsets[0]}]", $"[0, {data.Length + 4}]", "[-8, 0]", $"[{offsets[0]}, {offsets[1] + 4}]", "[0]", "null",
                }[rng.Next(6)]);
                break;
            case 3:
                header["__metadata__"] = JsonNode.Parse(new[] { "7", "[]", "{\"format\": 3}", "{\"a\": \"b\"}" }[rng.Next(4)]);
                break;
            default:
                File.WriteAllBytes(file, IoTestFiles.Compose(Fuzz.MutateJson(header.ToJsonString(), rng), data));
                return;
        }

        File.WriteAllBytes(file, IoTestFiles.Compose(header.ToJsonString(), data));
    }

    /// <summary>Edits a safetensors body: a NaN or Inf written over a value, bytes flipped, or the file cut short.</summary>
    private static byte[] MutateBody(byte[] bytes, Random rng)
    {
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        int at = headerEnd + rng.Next(Math.Max(1, (bytes.Length - headerEnd) / 4)) * 4;
        switch (rng.Next(3))
        {
            case 0 when at + 4 <= bytes.Length:
                BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(at), rng.Next(2) == 0 ? float.NaN : float.NegativeInfinity);
                return bytes;
            case 1:
                return bytes[..rng.Next(bytes.Length)];
            default:
                return Fuzz.MutateBytes(bytes, rng);
        }
    }

    /// <summary>Edits tiktoken.model's "base64 rank" lines: one replaced, repeated or dropped, or the text itself.</summary>
    private static string MutateLines(string text, Random rng)
    {
        var lines = text.Split('\n').ToList();
        int i = rng.Next(lines.Count);
        switch (rng.Next(4))
        {
            case 0:
                lines[i] = new[] { "!!!! 3", "QQ== -1", "QQ== 99999999999", "QQ==", "QQ== 1 2", " 5", "QUJD 0", "QQ== 3.5" }[rng.Next(8)];
                break;
            case 1:
                lines.Insert(i, lines[rng.Next(lines.Count)]);
                break;
            case 2:
                lines.RemoveAt(i);
                break;
            default:
                return Fuzz.MutateText(text, rng);
        }

        return string.Join('\n', lines);
    }

    private static void Copy(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string f in Directory.GetFiles(from))
        {
            File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        }
    }
}
