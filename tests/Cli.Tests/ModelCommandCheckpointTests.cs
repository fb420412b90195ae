using System.Text.Json.Nodes;
using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Model.Tokenization;
using static K2RL.Cli.Tests.ModelCommandInfoTests;

namespace K2RL.Cli.Tests;

/// <summary>`k2rl model init` and `k2rl model logits` end to end, through the CLI.</summary>
public sealed class ModelCommandCheckpointTests : IDisposable
{
    private readonly string root = Path.Combine(Path.GetTempPath(), $"k2rl-cli-model-{Guid.NewGuid():N}");

    public ModelCommandCheckpointTests() => Directory.CreateDirectory(root);

    public void Dispose() => Directory.Delete(root, recursive: true);

    private string Dir(string name) => Path.Combine(root, name);

    /// <summary>The tiny test preset with a vocabulary just large enough for the byte-level tokenizer (267 ids).</summary>
    private string SmallConfig()
    {
        string path = Dir("small.json");
        var json = JsonNode.Parse(File.ReadAllText(Preset("k2-test")))!.AsObject();
        json["vocab_size"] = SmallVocab;
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    private const int SmallVocab = 272;

    private static float[][] Matrix(JsonNode node) =>
        node.AsArray().Select(row => row!.AsArray().Select(x => x!.GetValue<float>()).ToArray()).ToArray();

    [Fact]
    public async Task InitWritesALoadableCheckpointWithTheDefaultTokenizer()
    {
        var json = await RunJson("model", "init", "--config", Preset("k2-nano"), "--seed", "7", "--out", Dir("a"), "--json");
        Assert.Equal(17_879_424L, json["total_params"]!.GetValue<long>());
        Assert.Equal("F32", json["dtype"]!.GetValue<string>());
        Assert.Equal(256 + SpecialTokens.All.Count, json["tokenizer_vocab_size"]!.GetValue<int>());
        Assert.Equal(
            new[] { "config.json", "model.safetensors", BpeTokenizer.RankFileName, BpeTokenizer.ConfigFileName }.Order(StringComparer.Ordinal),
            json["files"]!.AsArray().Select(f => f!.GetValue<string>()).Order(StringComparer.Ordinal));

        var loaded = ModelCheckpoint.Load(Dir("a"));
        var expected = new K2Model(loaded.Config);
        expected.InitializeWeights(7);
        Assert.Equal(expected.Parameters, loaded.Parameters);
        Assert.NotNull(loaded.Tokenizer);
        Assert.Equal(Checksums.Sha256File(Path.Combine(Dir("a"), "model.safetensors")), json["model_safetensors_sha256"]!.GetValue<string>());

        var info = await RunJson("model", "info", "--config", Dir("a"), "--json");       // a checkpoint directory describes itself
        Assert.Equal(17_879_424L, info["total_params"]!.GetValue<long>());
    }

    [Fact]
    public async Task InitIsDeterministicInTheSeed()
    {
        string config = SmallConfig();
        var a = await RunJson("model", "init", "--config", config, "--seed", "7", "--out", Dir("a"), "--json");
        var b = await RunJson("model", "init", "--config", config, "--seed", "7", "--out", Dir("b"), "--json");
        var c = await RunJson("model", "init", "--config", config, "--seed", "8", "--out", Dir("c"), "--json");
        Assert.Equal(a["model_safetensors_sha256"]!.GetValue<string>(), b["model_safetensors_sha256"]!.GetValue<string>());
        Assert.NotEqual(a["model_safetensors_sha256"]!.GetValue<string>(), c["model_safetensors_sha256"]!.GetValue<string>());
    }

    [Fact]
    public async Task InitRefusesADefaultTokenizerThatDoesNotFitTheVocabulary()
    {
        var (code, stdout, stderr) = await Run("model", "init", "--config", Preset("k2-test"), "--seed", "1", "--out", Dir("t"));
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains("vocab_size", stderr);
        Assert.Contains("267", stderr);
        Assert.False(Directory.Exists(Dir("t")));
    }

    [Fact]
    public async Task InitWithATokenizerDirectoryAndBf16()
    {
        BpeTokenizer.ByteLevel().Save(Dir("tok"));
        var json = await RunJson("model", "init", "--config", SmallConfig(), "--seed", "3", "--out", Dir("m"),
            "--tokenizer", Dir("tok"), "--dtype", "bf16", "--json");
        Assert.Equal("BF16", json["dtype"]!.GetValue<string>());
        var loaded = ModelCheckpoint.Load(Dir("m"));
        Assert.Equal(SafetensorsDType.BF16, loaded.StoredDType);
        Assert.True(json["model_safetensors_bytes"]!.GetValue<long>() < loaded.Layout.ParameterCount * 3);

        var model = new K2Model(loaded.Config);
        model.InitializeWeights(3);
        foreach (var t in loaded.Layout.Tensors.Where(t => !t.IsRoutingBias))
        {
            var written = t.Of(model.Parameters).ToArray().Select(x => SafetensorsDTypes.Bf16ToFloat(SafetensorsDTypes.FloatToBf16(x)));
            Assert.Equal(written, t.Of(loaded.Parameters).ToArray());
        }
    }

    [Fact]
    public async Task LogitsMatchTheModelAndAreCausal()
    {
        string path = SmallConfig();
        await RunJson("model", "init", "--config", path, "--seed", "11", "--out", Dir("a"), "--json");
        var json = await RunJson("model", "logits", "--checkpoint", Dir("a"), "--ids", "1,2,266", "--json");
        float[][] logits = Matrix(json["logits"]!);
        float[][] maxLogit = Matrix(json["max_logit"]!);
        Assert.Equal(3, logits.Length);
        Assert.All(logits, row => Assert.Equal(SmallVocab, row.Length));
        Assert.Equal(2, maxLogit.Length);                                  // [L = 2, H = 2]
        Assert.All(maxLogit, row => Assert.Equal(2, row.Length));
        Assert.All(logits.SelectMany(r => r), x => Assert.True(float.IsFinite(x)));
        Assert.NotEqual(logits[0], logits[1]);

        // The same weights in memory (never saved) give the same numbers, to the bit.
        var model = new K2Model(ModelConfig.Load(path));
        model.InitializeWeights(11);
        model.Forward([1, 2, 266], [-1, -1, -1], 1, 3);
        for (int t = 0; t < 3; t++)
        {
            Assert.Equal(model.Logits.Slice(t * SmallVocab, SmallVocab).ToArray(), logits[t]);
        }

        Assert.Equal(model.MaxLogits.ToArray(), maxLogit.SelectMany(r => r).ToArray());

        // Position 0 sees only token 1: its logits do not depend on what follows.
        var first = await RunJson("model", "logits", "--checkpoint", Dir("a"), "--ids", "1", "--json");
        Assert.Equal(logits[0], Matrix(first["logits"]!)[0]);
    }

    [Fact]
    public async Task LogitsRejectAnIdOutsideTheVocabulary()
    {
        await RunJson("model", "init", "--config", SmallConfig(), "--seed", "1", "--out", Dir("a"), "--json");
        var (code, stdout, stderr) = await Run("model", "logits", "--checkpoint", Dir("a"), "--ids", $"1,{SmallVocab},3", "--json");
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains($"token id {SmallVocab}", stderr);
    }

    [Fact]
    public async Task LogitsRejectMoreTokensThanThePositionLimitAndPrintATableWithoutJson()
    {
        await RunJson("model", "init", "--config", SmallConfig(), "--seed", "1", "--out", Dir("a"), "--json");
        var (code, stdout, stderr) = await Run("model", "logits", "--checkpoint", Dir("a"), "--ids", string.Join(',', Enumerable.Repeat(5, 65)));
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains("max_position_embeddings", stderr);

        (code, stdout, stderr) = await Run("model", "logits", "--checkpoint", Dir("a"), "--ids", "5,6");
        Assert.True(code == 0, stderr);
        Assert.Contains("position 1 (id 6): argmax id", stdout);
        Assert.Contains("layer 1 max attention logit", stdout);
    }

    [Fact]
    public async Task LogitsOnACorruptCheckpointNameTheTensor()
    {
        await RunJson("model", "init", "--config", SmallConfig(), "--seed", "1", "--out", Dir("a"), "--json");
        string weights = Path.Combine(Dir("a"), "model.safetensors");
        byte[] bytes = File.ReadAllBytes(weights);
        File.WriteAllBytes(weights, bytes[..^8]);                           // truncated
        var (code, stdout, stderr) = await Run("model", "logits", "--checkpoint", Dir("a"), "--ids", "1", "--json");
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains("lm_head.weight", stderr);
        Assert.Contains("truncated", stderr);
    }
}
