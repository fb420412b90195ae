using K2RL.Common;
using K2RL.Model.IO;
using K2RL.Model.Tests.Tokenization;
using K2RL.Model.Tokenization;

namespace K2RL.Model.Tests.IO;

/// <summary>
/// One way to open weights (issue 14 item 4): a checkpoint directory or a run directory, MANIFEST verified where
/// present, the same errors for every command, since every command loads through <see cref="ModelCheckpoint.Load"/>.
/// </summary>
public sealed class CheckpointPathTests : IDisposable
{
    private readonly TempDirectory dir = new();
    private readonly ModelConfig config = IoTestFiles.TestConfig() with { VocabSize = 272 };

    public void Dispose() => dir.Dispose();

    /// <summary>A run directory like pretraining writes: checkpoints/step-N with a MANIFEST each, LATEST naming the newest.</summary>
    private string Run(params int[] steps)
    {
        string run = dir.At("run");
        var layout = new ParameterLayout(config);
        foreach (int step in steps)
        {
            string ck = Path.Combine(run, "checkpoints", $"step-{step}");
            ModelCheckpoint.Save(ck, config, IoTestFiles.RandomParameters(layout, step), BpeTokenizer.ByteLevel());
            Checksums.WriteManifest(ck);
        }

        File.WriteAllText(Path.Combine(run, CheckpointPath.LatestName), $"checkpoints/step-{steps.Max()}\n");
        return run;
    }

    private static void FlipBytes(string file)
    {
        byte[] b = File.ReadAllBytes(file);
        for (int i = 0; i < 4; i++)
        {
            b[b.Length - 1 - 97 * i] ^= 0x40;
        }

        File.WriteAllBytes(file, b);
    }

    [Fact]
    public void ARunDirectoryOpensItsLatestCheckpoint()
    {
        string run = Run(2, 4);
        var loaded = ModelCheckpoint.Load(run);
        Assert.Equal(Path.GetFullPath(Path.Combine(run, "checkpoints", "step-4")), Path.GetFullPath(loaded.Directory));
        Assert.Equal(IoTestFiles.RandomParameters(loaded.Layout, 4), loaded.Parameters);
    }

    [Fact]
    public void ACheckpointThatFailsItsManifestIsRefusedWhereverItIsOpened()
    {
        string run = Run(2);
        string ck = Path.Combine(run, "checkpoints", "step-2");
        FlipBytes(Path.Combine(ck, ModelCheckpoint.WeightsFile));
        var e = Assert.Throws<CorruptFileException>(() => ModelCheckpoint.Load(ck));
        Assert.Contains(ModelCheckpoint.WeightsFile, e.Message);
        Assert.Contains(Checksums.ManifestName, e.Message);
        var viaRun = Assert.Throws<CorruptFileException>(() => ModelCheckpoint.Load(run));
        Assert.Contains("step-2", viaRun.Message);
        Assert.Contains(Checksums.ManifestName, viaRun.Message);
    }

    [Fact]
    public void ARunFallsBackToItsNewestGoodCheckpointAndSaysSo()
    {
        string run = Run(2, 4);
        FlipBytes(Path.Combine(run, "checkpoints", "step-4", ModelCheckpoint.WeightsFile));
        var warnings = new List<string>();
        var loaded = ModelCheckpoint.Load(run, warn: warnings.Add);
        Assert.EndsWith("step-2", loaded.Directory.TrimEnd('/'));
        Assert.Contains(warnings, w => w.Contains("step-4") && w.Contains(Checksums.ManifestName));
    }

    [Fact]
    public void PathsThatAreNotCheckpointsSayWhatTheyAre()
    {
        Assert.Contains("does not exist", Assert.Throws<CorruptFileException>(() => ModelCheckpoint.Load(dir.At("nope"))).Message);
        Assert.Contains("is a file", Assert.Throws<CorruptFileException>(() => ModelCheckpoint.Load(dir.File("f.txt", "x"))).Message);
        Directory.CreateDirectory(dir.At("empty"));
        Assert.Contains("neither a checkpoint directory", Assert.Throws<CorruptFileException>(() => ModelCheckpoint.Load(dir.At("empty"))).Message);
        Directory.CreateDirectory(dir.At("started/checkpoints"));
        Assert.Contains("no LATEST", Assert.Throws<CorruptFileException>(() => ModelCheckpoint.Load(dir.At("started"))).Message);
    }

    [Fact]
    public void AConfigFarLargerThanItsWeightsIsRefusedBeforeItsLayoutIsBuilt()
    {
        string run = Run(2);
        string ck = Path.Combine(run, "checkpoints", "step-2");
        File.Delete(Path.Combine(ck, Checksums.ManifestName));
        // 1,000 layers × (32 experts' 96 tensors): a layout of ~100,000 tensors for a file that holds 40.
        string json = File.ReadAllText(Path.Combine(ck, ModelCheckpoint.ConfigFile))
            .Replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1000").Replace("\"n_routed_experts\": 8", "\"n_routed_experts\": 32");
        File.WriteAllText(Path.Combine(ck, ModelCheckpoint.ConfigFile), json);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<CorruptFileException>(() => ModelCheckpoint.Load(ck));
        Assert.Contains(ModelCheckpoint.ConfigFile, e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 << 20);
    }
}
