using K2RL.Common;
using K2RL.Model.IO;
using K2RL.Model.Tests.Tokenization;
using K2RL.Model.Tokenization;
using K2RL.Tests.Shared;

namespace K2RL.Model.Tests.IO;

public class ModelCheckpointTests
{
    [Fact]
    public void F32RoundTripIsBitExact()
    {
        var config = IoTestFiles.TestConfig();
        var layout = new ParameterLayout(config);
        var parameters = IoTestFiles.RandomParameters(layout, seed: 1);
        using var dir = new TempDirectory();
        ModelCheckpoint.Save(dir.Path, config, parameters);

        var loaded = ModelCheckpoint.Load(dir.Path);
        Assert.Equal(config, loaded.Config);
        Assert.Equal(SafetensorsDType.F32, loaded.StoredDType);
        Assert.Equal(parameters.Length, loaded.Parameters.Length);
        for (int i = 0; i < parameters.Length; i++)
        {
            Assert.Equal(BitConverter.SingleToInt32Bits(parameters[i]), BitConverter.SingleToInt32Bits(loaded.Parameters[i]));
        }

        using var reader = SafetensorsReader.Open(dir.At(ModelCheckpoint.WeightsFile));
        Assert.Equal(layout.Tensors.Count, reader.Header.Entries.Count);
        Assert.Equal(layout.Tensors.Select(t => t.Name).Order(), reader.Header.Entries.Select(e => e.Name).Order());
        Assert.Contains("\"torch_dtype\": \"float32\"", File.ReadAllText(dir.At(ModelCheckpoint.ConfigFile)));
    }

    [Fact]
    public void Bf16CheckpointLoadsTheRoundedValuesAndKeepsTheRoutingBiasF32()
    {
        var config = IoTestFiles.TestConfig();
        var layout = new ParameterLayout(config);
        var parameters = IoTestFiles.RandomParameters(layout, seed: 2);
        const string bias = "model.layers.1.mlp.gate.e_score_correction_bias";
        layout.Span(parameters, bias)[0] = 1.0001f;                         // not representable in bf16
        using var dir = new TempDirectory();
        ModelCheckpoint.Save(dir.Path, config, parameters, dtype: SafetensorsDType.BF16);

        var loaded = ModelCheckpoint.Load(dir.Path);
        Assert.Equal(SafetensorsDType.BF16, loaded.StoredDType);
        foreach (var t in layout.Tensors)
        {
            var original = t.Of(parameters);
            var back = t.Of(loaded.Parameters);
            for (int i = 0; i < original.Length; i++)
            {
                float expected = t.IsRoutingBias ? original[i] : SafetensorsDTypes.Bf16ToFloat(SafetensorsDTypes.FloatToBf16(original[i]));
                Assert.Equal(expected, back[i]);
            }
        }

        Assert.Equal(1.0001f, loaded.Layout.Span(loaded.Parameters, bias)[0]);
        Assert.True(new FileInfo(dir.At(ModelCheckpoint.WeightsFile)).Length < layout.ParameterCount * 4 * 0.6);
        Assert.Contains("\"torch_dtype\": \"bfloat16\"", File.ReadAllText(dir.At(ModelCheckpoint.ConfigFile)));
    }

    [Fact]
    public void SavingAgainReplacesTheCheckpointWithoutTempFiles()
    {
        var config = IoTestFiles.TestConfig();
        var layout = new ParameterLayout(config);
        using var dir = new TempDirectory();
        ModelCheckpoint.Save(dir.Path, config, IoTestFiles.RandomParameters(layout, 1));
        var second = IoTestFiles.RandomParameters(layout, 2);
        ModelCheckpoint.Save(dir.Path, config, second);
        Assert.Equal(second, ModelCheckpoint.Load(dir.Path).Parameters);
        Assert.Equal(new[] { "config.json", "model.safetensors" }, Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void ShardedCheckpointWithAnIndexLoadsTheSameWeights()
    {
        var config = IoTestFiles.TestConfig();
        var parameters = IoTestFiles.RandomParameters(new ParameterLayout(config), seed: 6);
        using var dir = new TempDirectory();
        ModelCheckpoint.Save(dir.Path, config, parameters);
        IoTestFiles.ShardCheckpoint(dir.Path);
        Assert.False(File.Exists(dir.At(ModelCheckpoint.WeightsFile)));

        var loaded = ModelCheckpoint.Load(dir.Path);
        Assert.Equal(parameters, loaded.Parameters);
    }

    [Fact]
    public void TokenizerTravelsWithTheCheckpoint()
    {
        var config = ModelConfig.Load(Path.Combine(ExternalTools.RepoRoot(), "configs", "models", "k2-nano.json"));
        var layout = new ParameterLayout(config);
        using var dir = new TempDirectory();
        ModelCheckpoint.Save(dir.Path, config, IoTestFiles.RandomParameters(layout, 1), BpeTokenizer.ByteLevel());
        Assert.True(File.Exists(dir.At(BpeTokenizer.RankFileName)));
        Assert.True(File.Exists(dir.At(BpeTokenizer.ConfigFileName)));
        Assert.Equal(4, Directory.GetFileSystemEntries(dir.Path).Length);    // no temporary folder left

        var loaded = ModelCheckpoint.Load(dir.Path);
        Assert.NotNull(loaded.Tokenizer);
        Assert.Equal(256 + SpecialTokens.All.Count, loaded.Tokenizer.VocabSize);
        string text = "<|im_user|>héllo<|im_end|>";
        Assert.Equal(BpeTokenizer.ByteLevel().Encode(text), loaded.Tokenizer.Encode(text));
        Assert.Null(ModelCheckpoint.Load(WithoutTokenizer(dir)).Tokenizer);
    }

    [Fact]
    public void TokenizerLargerThanTheVocabularyIsRefused()
    {
        var config = IoTestFiles.TestConfig();                              // vocab_size 64 < 256 bytes + specials
        var parameters = IoTestFiles.RandomParameters(new ParameterLayout(config), 1);
        using var dir = new TempDirectory();
        var e = Assert.Throws<ConfigException>(() => ModelCheckpoint.Save(dir.Path, config, parameters, BpeTokenizer.ByteLevel()));
        Assert.Contains("vocab_size", e.Message);
        Assert.Contains("267", e.Message);

        ModelCheckpoint.Save(dir.Path, config, parameters);
        BpeTokenizer.ByteLevel().Save(dir.Path);                            // put there by hand
        var bad = Assert.Throws<CorruptFileException>(() => ModelCheckpoint.Load(dir.Path));
        Assert.Contains(BpeTokenizer.RankFileName, bad.Message);
        Assert.Contains("vocab_size", bad.Message);
    }

    private static string WithoutTokenizer(TempDirectory dir)
    {
        string copy = dir.At("copy");
        Directory.CreateDirectory(copy);
        foreach (string name in new[] { ModelCheckpoint.WeightsFile, ModelCheckpoint.ConfigFile })
        {
            File.Copy(dir.At(name), Path.Combine(copy, name));
        }

        return copy;
    }

    [Fact]
    public void LoadsIntoACallerSuppliedBuffer()
    {
        var config = IoTestFiles.TestConfig();
        var layout = new ParameterLayout(config);
        var parameters = IoTestFiles.RandomParameters(layout, seed: 4);
        using var dir = new TempDirectory();
        ModelCheckpoint.Save(dir.Path, config, parameters);

        var mine = new float[layout.TotalLength];
        Array.Fill(mine, 9f);
        var loaded = ModelCheckpoint.Load(dir.Path, l => l.TotalLength == mine.Length ? mine : throw new InvalidOperationException());
        Assert.Same(mine, loaded.Parameters);
        Assert.Equal(parameters, mine);                                     // padding cleared too
        Assert.Throws<ArgumentException>(() => ModelCheckpoint.Load(dir.Path, _ => new float[3]));
    }

    [Fact]
    public void ManifestChecksumsEveryFileAndCatchesAChange()
    {
        var config = IoTestFiles.TestConfig();
        using var dir = new TempDirectory();
        ModelCheckpoint.Save(dir.Path, config, IoTestFiles.RandomParameters(new ParameterLayout(config), 1));
        Directory.CreateDirectory(dir.At("sub"));
        File.WriteAllText(Path.Combine(dir.At("sub"), "abc.txt"), "abc");
        Checksums.WriteManifest(dir.Path);

        string manifest = File.ReadAllText(dir.At(Checksums.ManifestName));
        Assert.Contains("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  sub/abc.txt\n", manifest);   // sha256("abc")
        Assert.Equal(3, manifest.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Checksums.VerifyManifest(dir.Path);

        File.WriteAllText(Path.Combine(dir.At("sub"), "abc.txt"), "abd");
        var changed = Assert.Throws<CorruptFileException>(() => Checksums.VerifyManifest(dir.Path));
        Assert.Contains("abc.txt", changed.Message);

        File.Delete(Path.Combine(dir.At("sub"), "abc.txt"));
        Assert.Contains("missing", Assert.Throws<CorruptFileException>(() => Checksums.VerifyManifest(dir.Path)).Message);

        Checksums.WriteManifest(dir.Path);
        File.WriteAllText(dir.At("extra.bin"), "x");
        Assert.Contains("extra.bin", Assert.Throws<CorruptFileException>(() => Checksums.VerifyManifest(dir.Path)).Message);
    }
}
