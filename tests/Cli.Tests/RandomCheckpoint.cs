using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Model.Tokenization;

namespace K2RL.Cli.Tests;

/// <summary>A randomly initialized checkpoint directory (byte-level tokenizer) in a temp folder, deleted on dispose.</summary>
public sealed class RandomCheckpoint : IDisposable
{
    public RandomCheckpoint(ModelConfig config, ulong seed, string prefix)
    {
        Dir = Path.Combine(Path.GetTempPath(), prefix + Guid.NewGuid().ToString("N"));
        var model = new K2Model(config);
        model.InitializeWeights(seed);
        ModelCheckpoint.Save(Dir, config, model.Parameters, BpeTokenizer.ByteLevel());
    }

    public string Dir { get; }

    public void Dispose()
    {
        if (Directory.Exists(Dir))
        {
            Directory.Delete(Dir, recursive: true);
        }
    }
}
