using K2RL.Common;
using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Trainer.Optim;

namespace K2RL.Trainer.Checkpointing;

/// <summary>
/// The files a training checkpoint holds besides its job state, written and read alike by pretraining and the RL job:
/// model.safetensors (HF tensor names), config.json and optimizer.bin; the optimizer's moments match the layout.
/// </summary>
public static class TrainingFiles
{
    public const string WeightsFile = "model.safetensors";
    public const string ConfigFile = "config.json";
    public const string OptimizerFile = "optimizer.bin";

    public static void Save(string dir, ModelConfig config, ParameterLayout layout, float[] parameters, Optimizer optimizer)
    {
        AtomicFile.Write(Path.Combine(dir, WeightsFile), s => SafetensorsWriter.WriteLayoutTo(s, layout, parameters));
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFile), config.ToJson());
        AtomicFile.Write(Path.Combine(dir, OptimizerFile), optimizer.Save);
    }

    public static void Load(string dir, ParameterLayout layout, float[] parameters, Optimizer optimizer)
    {
        // Another model is not a damaged checkpoint: say so, rather than let the run fall back to older ones that differ too.
        string configPath = Path.Combine(dir, ConfigFile);
        if (File.Exists(configPath) && ModelConfig.Load(configPath).Differences(layout.Config) is { Count: > 0 } differences)
        {
            throw new ConfigException(
                $"the job's model differs from the one in {configPath} (checkpoint vs job: {string.Join("; ", differences)}): resume with the job that made the run, or start a new --run-dir");
        }

        using (var weights = SafetensorsReader.Open(Path.Combine(dir, WeightsFile)))
        {
            weights.LoadInto(layout, parameters);
        }

        using var fs = File.OpenRead(Path.Combine(dir, OptimizerFile));
        optimizer.Load(fs, Path.Combine(dir, OptimizerFile));
    }
}
