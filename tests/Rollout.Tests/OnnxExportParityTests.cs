using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Model.Tests;
using Xunit.Abstractions;

namespace K2RL.Rollout.Tests;

/// <summary>
/// The ONNX export run by ONNX Runtime (CPU) against K2RL's training forward on the same weights (O(1) activations,
/// a correction bias that changes choices): full-sequence logits, and logits decoded token by token through the
/// exported cache, each within 1e-4 of K2RL's (max abs difference printed).
/// </summary>
public sealed class OnnxExportParityTests(ITestOutputHelper output) : IDisposable
{
    public const float Tolerance = 1e-4f;

    private readonly string dir = Directory.CreateTempSubdirectory("k2rl-onnx-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Theory]
    [InlineData("k2-test", 2, 9, 5)]      // n_group 2, topk_group 1: the group-limited routing
    [InlineData("k2-nano", 2, 12, 4)]
    public void PrefillAndCachedDecodeMatchK2RL(string preset, int B, int prompt, int steps)
    {
        var config = ModelTestUtil.Preset(preset);
        var model = new K2Model(config);
        ModelTestUtil.FillTestWeights(model, seed: 7);
        string path = Path.Combine(dir, preset + ".onnx");
        long bytes = OnnxExport.Save(path, config, model.Parameters);
        Assert.Equal(bytes, new FileInfo(path).Length);

        int T = prompt + steps, V = config.VocabSize;
        var (tokens, _) = ModelTestUtil.RandomBatch(V, B * T, seed: 3);
        var targets = new int[B * T];
        Array.Fill(targets, -1);
        model.Forward(tokens, targets, B, T);
        var reference = model.Logits.ToArray();                                   // [B, T, V]

        using var ort = new OnnxRuntimeModel(path, config, threads: 1);
        // the whole sequence in one call (prefill, empty cache)
        var all = new float[B * T * V];
        ort.Run(tokens, B, all);
        double full = MaxAbsDiff(all, reference);

        // the prompt, then one token per call through the cache
        ort.Reset();
        var promptIds = Rows(tokens, B, T, 0, prompt);
        var logits = new float[B * prompt * V];
        ort.Run(promptIds, B, logits);
        double cached = MaxAbsDiff(logits, Rows(reference, B, T * V, 0, prompt * V));
        var step = new float[B * V];
        for (int t = prompt; t < T; t++)
        {
            ort.Run(Rows(tokens, B, T, t, 1), B, step);
            cached = Math.Max(cached, MaxAbsDiff(step, Rows(reference, B, T * V, t * V, V)));
        }

        Assert.Equal(T, ort.CacheLength);
        double scale = reference.Max(Math.Abs);
        output.WriteLine($"{preset}: {bytes:N0} bytes; max |logit| {scale:G4}; max abs diff full {full:E2}, prefill + {steps} cached steps {cached:E2}");
        Assert.True(scale > 0.5, $"logits too small ({scale}) for the comparison to mean anything");
        Assert.True(full <= Tolerance, $"full-sequence logits differ by {full:E3}");
        Assert.True(cached <= Tolerance, $"cached-decode logits differ by {cached:E3}");
    }

    [Fact]
    public void ALoadedCheckpointExportsStandardOpsWithTheCacheAsInputsAndOutputs()
    {
        var config = ModelTestUtil.Preset("k2-test");
        var model = new K2Model(config);
        model.InitializeWeights(5);
        string ckpt = Path.Combine(dir, "ckpt");
        ModelCheckpoint.Save(ckpt, config, model.Parameters);
        var loaded = ModelCheckpoint.Load(ckpt);
        var proto = OnnxExport.Build(loaded.Config, loaded.Parameters);
        Assert.Equal(OnnxExport.Opset, proto.OpsetImport.Single().Version);
        Assert.Equal(1 + 2 * config.NumHiddenLayers, proto.Graph.Input.Count);
        Assert.Equal(1 + 2 * config.NumHiddenLayers, proto.Graph.Output.Count);
        Assert.All(proto.Graph.Node, n => Assert.Equal("", n.Domain));             // standard ops only
    }

    private static T[] Rows<T>(T[] data, int rows, int stride, int start, int length)
    {
        var r = new T[rows * length];
        for (int b = 0; b < rows; b++)
        {
            Array.Copy(data, b * stride + start, r, b * length, length);
        }

        return r;
    }

    private static double MaxAbsDiff(float[] a, float[] b)
    {
        Assert.Equal(b.Length, a.Length);
        double m = 0;
        for (int i = 0; i < a.Length; i++)
        {
            m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        }

        return m;
    }
}
