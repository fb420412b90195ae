using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Model.Tokenization;

namespace K2RL.Model.IO;

/// <summary>A loaded checkpoint: the config, its layout and a layout-sized fp32 parameter buffer.</summary>
/// <param name="StoredDType">the narrowest dtype the weights were stored in (F32 unless written as BF16/F16).</param>
/// <param name="Tokenizer">the tokenizer saved with the model, or null when the directory holds none.</param>
public sealed record CheckpointData(
    string Directory, ModelConfig Config, ParameterLayout Layout, float[] Parameters, SafetensorsDType StoredDType, BpeTokenizer? Tokenizer);

/// <summary>
/// A model checkpoint directory laid out as a Hugging Face one: <c>model.safetensors</c> (every tensor of
/// the <see cref="ParameterLayout"/> under its HF name), <c>config.json</c> (<see cref="ModelConfig.ToJson"/>,
/// with <c>torch_dtype</c> naming the stored dtype) and, when given, the tokenizer files
/// (<see cref="BpeTokenizer.RankFileName"/>, <see cref="BpeTokenizer.ConfigFileName"/>), so the directory is
/// usable for generation on its own. Each file is written atomically. Loading validates everything: the
/// header, the config against the tensor shapes (by key), then the exact set of tensors and their shapes,
/// then that every value is finite, then that the tokenizer's ids fit the vocabulary.
/// </summary>
public static class ModelCheckpoint
{
    public const string WeightsFile = "model.safetensors";
    public const string ConfigFile = "config.json";

    /// <summary>Writes <paramref name="dir"/>/model.safetensors, config.json and the tokenizer files (creating the directory).</summary>
    public static void Save(string dir, ModelConfig config, float[] parameters, BpeTokenizer? tokenizer = null,
        SafetensorsDType dtype = SafetensorsDType.F32)
    {
        var layout = new ParameterLayout(config);
        if (parameters.LongLength != layout.TotalLength)
        {
            throw new ArgumentException(
                $"parameters hold {parameters.LongLength} floats, the layout of this config {layout.TotalLength}", nameof(parameters));
        }

        if (tokenizer is not null)
        {
            CheckTokenizerFits(tokenizer, config, "the tokenizer");
        }

        Directory.CreateDirectory(dir);
        SafetensorsWriter.WriteLayout(Path.Combine(dir, WeightsFile), layout, parameters, dtype);
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFile), ConfigJson(config, dtype));
        if (tokenizer is not null)
        {
            SaveTokenizer(dir, tokenizer);
        }
    }

    /// <summary>Throws when the tokenizer has ids the model's embedding has no row for.</summary>
    public static void CheckTokenizerFits(BpeTokenizer tokenizer, ModelConfig config, string what)
    {
        if (tokenizer.VocabSize > config.VocabSize)
        {
            throw new K2RL.Common.ConfigException(
                $"{what} has {tokenizer.VocabSize} ids ({tokenizer.RankCount} tokens + {tokenizer.SpecialTokenIds.Count} special), "
                + $"more than the model's \"vocab_size\" {config.VocabSize}; use a config with vocab_size >= {tokenizer.VocabSize} or a smaller tokenizer");
        }
    }

    /// <summary>
    /// The tokenizer writes its files non-atomically, so it writes into a temporary folder inside
    /// <paramref name="dir"/>; each file is then flushed and renamed into place.
    /// </summary>
    private static void SaveTokenizer(string dir, BpeTokenizer tokenizer)
    {
        string temp = Path.Combine(dir, $".tokenizer.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            tokenizer.Save(temp);
            foreach (string file in Directory.GetFiles(temp))
            {
                using (var stream = new FileStream(file, FileMode.Open, FileAccess.ReadWrite))
                {
                    stream.Flush(flushToDisk: true);
                }

                File.Move(file, Path.Combine(dir, Path.GetFileName(file)), overwrite: true);
            }
        }
        finally
        {
            if (Directory.Exists(temp))
            {
                Directory.Delete(temp, recursive: true);
            }
        }

        AtomicFile.FlushDirectory(dir);
    }

    /// <summary>config.json text for a checkpoint stored as <paramref name="dtype"/>.</summary>
    public static string ConfigJson(ModelConfig config, SafetensorsDType dtype)
    {
        var node = JsonNode.Parse(config.ToJson())!.AsObject();
        node["torch_dtype"] = dtype switch
        {
            SafetensorsDType.BF16 => "bfloat16",
            SafetensorsDType.F16 => "float16",
            _ => "float32",
        };
        return node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>
    /// Loads and validates a checkpoint: <paramref name="path"/> is a checkpoint directory or a run directory, resolved
    /// (and checked against its MANIFEST) by <see cref="CheckpointPath.Resolve"/>. Any problem is a
    /// <see cref="K2RL.Common.K2Exception"/> naming the file and tensor or key; the config is validated and matched
    /// against the tensors' shapes before anything of the model's size is allocated. <paramref name="bufferFor"/> may
    /// supply the parameter buffer (for instance a model's own, built from the loaded config) so the weights are read
    /// straight into it; it must be layout-sized. By default a new buffer is allocated.
    /// </summary>
    public static CheckpointData Load(string path, Func<ParameterLayout, float[]>? bufferFor = null, Action<string>? warn = null)
    {
        string dir = CheckpointPath.Resolve(path, warn);
        string configPath = Path.Combine(dir, ConfigFile);
        if (!File.Exists(configPath))
        {
            throw CheckpointErrors.File(configPath, "missing: a checkpoint directory holds config.json and model.safetensors (or shards and model.safetensors.index.json)");
        }

        var config = ModelConfig.Load(configPath);
        using var weights = SafetensorsSet.OpenCheckpoint(dir);
        ConfigTensorCheck.Check(config, weights, configPath);

        // A config far out of line with the file (many times the tensors it holds) is refused before its layout is built:
        // the per-tensor check below names a missing tensor, but only after laying out every tensor the config describes.
        long described = ParameterLayout.TensorCount(config), held = weights.Names.Count();
        if (described > 2 * held + 64)
        {
            throw CheckpointErrors.File(configPath,
                $"describes {described} tensors, but the weights hold {held}: the config does not match the weights");
        }

        var layout = new ParameterLayout(config);
        if (layout.TotalLength > Array.MaxLength)
        {
            throw CheckpointErrors.File(configPath, $"a model of {layout.TotalLength} floats does not fit one in-memory buffer");
        }

        var parameters = bufferFor?.Invoke(layout) ?? layout.NewBuffer();
        if (parameters.LongLength != layout.TotalLength)
        {
            throw new ArgumentException($"the supplied buffer holds {parameters.LongLength} floats, the layout {layout.TotalLength}", nameof(bufferFor));
        }

        Array.Clear(parameters);                                            // padding between tensors is zero
        weights.LoadInto(layout, parameters);
        BpeTokenizer? tokenizer = null;
        string rankFile = Path.Combine(dir, BpeTokenizer.RankFileName);
        if (File.Exists(rankFile) || File.Exists(Path.Combine(dir, BpeTokenizer.ConfigFileName)))
        {
            tokenizer = BpeTokenizer.Load(dir);
            if (tokenizer.VocabSize > config.VocabSize)
            {
                throw CheckpointErrors.File(rankFile,
                    $"the tokenizer has {tokenizer.VocabSize} ids, more than \"vocab_size\" {config.VocabSize} in {ConfigFile}");
            }
        }

        var stored = weights.StoredDType;
        return new CheckpointData(dir, config, layout, parameters, stored, tokenizer);
    }
}
