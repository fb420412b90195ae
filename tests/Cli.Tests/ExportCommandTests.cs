using System.Text.Json.Nodes;
using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Rollout;

namespace K2RL.Cli.Tests;

/// <summary><c>k2rl export</c>: a checkpoint to an ONNX file that ONNX Runtime runs to K2RL's logits.</summary>
public sealed class ExportCommandTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("k2rl-export-").FullName;

    public ExportCommandTests()
    {
        // k2-test's 64-id vocabulary has no room for a tokenizer: weights and config alone
        var config = ModelConfig.Load(ModelCommandInfoTests.Preset("k2-test"));
        var model = new K2Model(config);
        model.InitializeWeights(4);
        ModelCheckpoint.Save(CheckpointDir, config, model.Parameters);
    }

    private string CheckpointDir => Path.Combine(dir, "ckpt");

    private string OnnxPath => Path.Combine(dir, "exported.onnx");

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    public async Task ExportsAnOnnxFileThatOnnxRuntimeRunsToTheCheckpointsLogits()
    {
        var json = await ModelCommandInfoTests.RunJson("export", "--checkpoint", CheckpointDir, "--format", "onnx", "--out", OnnxPath, "--json");
        Assert.Equal("onnx", (string?)json["format"]);
        Assert.Equal(OnnxExport.Opset, (int)json["opset"]!);
        Assert.Equal(new FileInfo(OnnxPath).Length, (long)json["bytes"]!);

        var loaded = ModelCheckpoint.Load(CheckpointDir);
        var model = new K2Model(loaded.Config);
        loaded.Parameters.CopyTo(model.Parameters, 0);
        int[] tokens = [1, 5, 9, 33, 2, 60, 7];
        model.Forward(tokens, new int[tokens.Length].Select(_ => -1).ToArray(), 1, tokens.Length);
        using var ort = new OnnxRuntimeModel(OnnxPath, loaded.Config, threads: 1);
        var logits = new float[tokens.Length * loaded.Config.VocabSize];
        ort.Run(tokens, 1, logits);
        var reference = model.Logits.ToArray();
        Assert.All(Enumerable.Range(0, logits.Length), i => Assert.True(Math.Abs(logits[i] - reference[i]) <= 1e-4f, $"logit {i}: {logits[i]} vs {reference[i]}"));
    }

    [Fact]
    public async Task AnUnknownFormatIsRefusedBeforeAnythingIsWritten()
    {
        var (code, _, err) = await ModelCommandInfoTests.Run("export", "--checkpoint", CheckpointDir, "--format", "gguf", "--out", OnnxPath);
        Assert.NotEqual(0, code);
        Assert.Contains("--format \"gguf\" is not supported", err);
        Assert.False(File.Exists(OnnxPath));
    }
}
