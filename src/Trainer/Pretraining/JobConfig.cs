using K2RL.Common;
using K2RL.Common.Config;
using K2RL.Model;
using K2RL.Trainer.Optim;

namespace K2RL.Trainer.Pretraining;

/// <summary>Where documents come from (job file section `data`).</summary>
public sealed record DataSettings
{
    /// <summary>Synthetic task kinds drawn from the Gym generators; empty turns the synthetic corpus off.</summary>
    public IReadOnlyList<string> SyntheticTasks { get; init; } = [];

    /// <summary>Highest difficulty drawn for synthetic tasks (in [1, max], by <see cref="DifficultyWeights"/>).</summary>
    public int SyntheticMaxDifficulty { get; init; } = 2;

    /// <summary>Relative weight of each synthetic kind (unnamed kinds weigh 1); null: uniform over the kinds.</summary>
    public IReadOnlyDictionary<string, float>? TaskWeights { get; init; }

    /// <summary>Relative weight of difficulty 1..max; null: uniform.</summary>
    public IReadOnlyList<float>? DifficultyWeights { get; init; }

    /// <summary>User text (.txt: one document per blank-line-separated block) and JSONL ("text" field) files.</summary>
    public IReadOnlyList<string> Files { get; init; } = [];

    /// <summary>Share of documents taken from the files when both sources are on.</summary>
    public float FileFraction { get; init; } = 0.5f;
}

/// <summary>A pretraining job, parsed and checked from YAML before any work starts.</summary>
public sealed record JobConfig
{
    public required string ModelPath { get; init; }

    public required ModelConfig Model { get; init; }

    /// <summary>"bytes" (byte-level BPE without merges), "train" (BPE trained to vocab_size on the corpus at the start), or a tokenizer directory.</summary>
    public string Tokenizer { get; init; } = "bytes";

    /// <summary>With "train": every digit its own token (<see cref="K2RL.Model.Tokenization.PreTokenizer.SplitDigitsPattern"/>).</summary>
    public bool SplitDigits { get; init; } = true;

    public ulong Seed { get; init; } = 1234;

    public int BatchSize { get; init; } = 8;

    /// <summary>Micro-batches of BatchSize × SeqLen per optimizer step (gradient accumulation; 1 = none).</summary>
    public int GradAccumSteps { get; init; } = 1;

    public int SeqLen { get; init; } = 256;

    public int Steps { get; init; } = 1000;

    public OptimizerSettings Optimizer { get; init; } = new();

    public LrSchedule Schedule { get; init; } = new();

    /// <summary>Aux-loss-free bias step (SPEC: 0.001); 0 turns the rule off.</summary>
    public float BiasGamma { get; init; } = ExpertBalance.DefaultGamma;

    /// <summary>Sequence-wise balance loss weight (SPEC: 0.0001 when on); 0 is off.</summary>
    public float SeqAuxAlpha { get; init; }

    public DataSettings Data { get; init; } = new();

    public int CheckpointEvery { get; init; } = 100;

    public int KeepCheckpoints { get; init; } = 3;

    /// <summary>Non-finite losses in a row that stop the job.</summary>
    public int MaxBadSteps { get; init; } = 3;

    /// <summary>Threads for the optimizer (0: all cores).</summary>
    public int Threads { get; init; }

    public string SourceText { get; init; } = "";

    public static JobConfig Load(string path, IReadOnlyCollection<string> syntheticKinds)
    {
        if (!File.Exists(path))
        {
            throw new ConfigException($"job file not found: {path}");
        }

        return Parse(File.ReadAllText(path), path, syntheticKinds);
    }

    public static JobConfig Parse(string text, string file, IReadOnlyCollection<string> syntheticKinds)
    {
        var r = YamlReader.Parse(text, file);
        string modelRef = r.OptionalStr("model") ?? throw r.Missing("model", "a model config.json path");
        string modelPath = ResolvePath(modelRef, file)
            ?? throw new ConfigException($"{r.At("model")}: \"model\": no file {modelRef} (looked relative to the working directory and the job file)");
        ModelConfig model;
        try
        {
            model = LoadModel(modelPath, r.Section("model_overrides"));
        }
        catch (Exception e) when (e is ConfigException or System.Text.Json.JsonException or InvalidOperationException && !e.Message.StartsWith(file, StringComparison.Ordinal))
        {
            throw new ConfigException($"{r.At("model")}: \"model\" {modelPath}: {e.Message}", e);
        }


        var optimizer = ParseOptimizer(r.Section("optimizer"), new OptimizerSettings());

        var schedule = ParseSchedule(r.Section("schedule"), new LrSchedule());

        var b = r.Section("balance");
        float biasGamma = b.Float("bias_gamma", ExpertBalance.DefaultGamma, 0, 1);
        float seqAux = b.Float("seq_aux_alpha", 0f, 0, 1);
        b.RejectUnknown();

        var data = ParseData(r.Section("data"), file, syntheticKinds);
        if (data.SyntheticTasks.Count == 0 && data.Files.Count == 0)
        {
            throw new ConfigException($"{r.At("data")}: \"data\" names no source: list synthetic tasks or files");
        }

        var c = r.Section("checkpoint");
        int every = c.Int("every_steps", 100, 1);
        int keep = c.Int("keep", 3, 1);
        c.RejectUnknown();

        string tokenizer = r.Str("tokenizer", "bytes");
        bool splitDigits = r.Bool("split_digits", true);
        if (tokenizer != "train" && r.OptionalStr("split_digits") is not null)
        {
            throw new ConfigException($"{r.At("split_digits")}: \"split_digits\" applies to \"tokenizer: train\" only (a saved tokenizer keeps its own split)");
        }

        int seqLen = r.Int("seq_len", 256, 2);
        var job = new JobConfig
        {
            ModelPath = modelPath,
            Model = model,
            Tokenizer = tokenizer is "bytes" or "train" ? tokenizer : ResolveDirectory(tokenizer, file)
                ?? throw new ConfigException($"{r.At("tokenizer")}: \"tokenizer\": no tokenizer directory {tokenizer} (or use bytes / train)"),
            SplitDigits = splitDigits,
            Seed = (ulong)r.Long("seed", 1234),
            BatchSize = r.Int("batch_size", 8, 1, 4096),
            GradAccumSteps = r.Int("grad_accum_steps", 1, 1, 4096),
            SeqLen = seqLen,
            Steps = r.Int("steps", 1000, 1),
            Optimizer = optimizer,
            Schedule = schedule,
            BiasGamma = biasGamma,
            SeqAuxAlpha = seqAux,
            Data = data,
            CheckpointEvery = every,
            KeepCheckpoints = keep,
            MaxBadSteps = r.Int("max_bad_steps", 3, 1),
            Threads = r.Int("threads", 0, 0, 1024),
            SourceText = text,
        };
        r.RejectUnknown();
        if (seqLen > model.MaxPositionEmbeddings)
        {
            throw new ConfigException($"{r.At("seq_len")}: \"seq_len\" {seqLen} exceeds the model's max_position_embeddings {model.MaxPositionEmbeddings}");
        }

        if (tokenizer is "bytes" or "train" && model.VocabSize < BpeTextEncoder.ByteLevelVocab)
        {
            throw new ConfigException(
                $"{r.At("tokenizer")}: \"tokenizer: {tokenizer}\" needs vocab_size >= {BpeTextEncoder.ByteLevelVocab}, {modelPath} has {model.VocabSize}");
        }

        return job;
    }

    /// <summary>The `optimizer` section (shared by the pretraining and RL jobs); absent keys keep <paramref name="defaults"/>.</summary>
    internal static OptimizerSettings ParseOptimizer(YamlReader o, OptimizerSettings defaults)
    {
        var optimizer = new OptimizerSettings
        {
            Kind = o.Str("kind", defaults.Kind, "muonclip", "muon", "adamw"),
            Lr = o.Float("lr", defaults.Lr, 0, 10, minExclusive: true),
            WeightDecay = o.Float("weight_decay", defaults.WeightDecay, 0, 1),
            Momentum = o.Float("momentum", defaults.Momentum, 0, 1),
            Nesterov = o.Bool("nesterov", defaults.Nesterov),
            NsSteps = o.Int("ns_steps", defaults.NsSteps, 1, 20),
            Beta1 = o.Float("beta1", defaults.Beta1, 0, 1),
            Beta2 = o.Float("beta2", defaults.Beta2, 0, 1),
            Eps = o.Float("eps", defaults.Eps, 0, 1, minExclusive: true),
            QkClipTau = o.Float("qk_clip_tau", defaults.QkClipTau, 0, double.PositiveInfinity, minExclusive: true),
            GradClip = o.Float("grad_clip", defaults.GradClip, 0),
        };
        o.RejectUnknown();
        return optimizer;
    }

    /// <summary>The `schedule` section (shared by the pretraining and SFT jobs); absent keys keep <paramref name="defaults"/>.</summary>
    internal static LrSchedule ParseSchedule(YamlReader s, LrSchedule defaults)
    {
        var schedule = new LrSchedule
        {
            Kind = s.Str("kind", defaults.Kind, "wsd", "cosine", "constant"),
            WarmupSteps = s.Int("warmup_steps", defaults.WarmupSteps, 0),
            DecayFraction = s.Float("decay_fraction", defaults.DecayFraction, 0, 1),
            MinLrRatio = s.Float("min_lr_ratio", defaults.MinLrRatio, 0, 1),
        };
        s.RejectUnknown();
        return schedule;
    }

    /// <summary>The `data` section (the pretraining corpus; also the RL job's PTX data).</summary>
    internal static DataSettings ParseData(YamlReader d, string file, IReadOnlyCollection<string> syntheticKinds)
    {
        var kinds = syntheticKinds.Order(StringComparer.Ordinal).ToArray();
        var synthetic = d.StrList("synthetic", kinds, kinds);
        int maxDifficulty = d.Int("max_difficulty", 2, 1, 10);
        var data = new DataSettings
        {
            SyntheticTasks = synthetic,
            SyntheticMaxDifficulty = maxDifficulty,
            TaskWeights = MixWeights.ParseTaskWeights(d, synthetic),
            DifficultyWeights = MixWeights.ParseDifficultyWeights(d, maxDifficulty),
            Files = d.StrList("files", []).Select(f => ResolvePath(f, file)
                ?? throw new ConfigException($"{d.At("files")}: \"{d.Prefix}files\": no file {f}")).ToArray(),
            FileFraction = d.Float("file_fraction", 0.5f, 0, 1),
        };
        d.RejectUnknown();
        return data;
    }

    /// <summary>
    /// The model config file, with `model_overrides` (HF config.json keys → values) applied on top, so an
    /// experiment can shrink a preset without a new file. Errors name the job file line of the override.
    /// </summary>
    private static ModelConfig LoadModel(string modelPath, YamlReader overrides)
    {
        var keys = overrides.Keys();
        if (keys.Count == 0)
        {
            return ModelConfig.Load(modelPath);
        }

        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(modelPath))!.AsObject();
        foreach (var (key, at) in keys)
        {
            string text = overrides.Str(key, "");
            System.Text.Json.Nodes.JsonNode? value = text switch
            {
                "true" => true,
                "false" => false,
                "null" => null,
                _ when double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double d) => d,
                _ => text,
            };
            if (!json.ContainsKey(key))
            {
                throw new ConfigException($"{at}: \"model_overrides.{key}\" is not a key of {modelPath}");
            }

            json[key] = value;
        }

        try
        {
            return ModelConfig.Parse(json.ToJsonString(), $"{modelPath} with model_overrides from {overrides.File}");
        }
        catch (ConfigException e)
        {
            throw new ConfigException($"{keys[0].At}: model_overrides: {e.Message}", e);
        }
    }

    internal static string? ResolveDirectory(string path, string jobFile)
    {
        string? marker = ResolvePath(Path.Combine(path, K2RL.Model.Tokenization.BpeTokenizer.ConfigFileName), jobFile);
        return marker is null ? null : Path.GetDirectoryName(marker);
    }

    /// <summary>An existing file: as given, relative to the working directory, to the job file's folder, or to a folder above it.</summary>
    internal static string? ResolvePath(string path, string jobFile)
    {
        if (Path.IsPathRooted(path))
        {
            return File.Exists(path) ? path : null;
        }

        if (File.Exists(path))
        {
            return Path.GetFullPath(path);
        }

        var dir = new DirectoryInfo(Path.GetDirectoryName(Path.GetFullPath(jobFile))!);
        while (dir is not null)
        {
            string candidate = Path.Combine(dir.FullName, path);
            if (File.Exists(candidate))
            {
                return candidate;
            }

            dir = dir.Parent;
        }

        return null;
    }
}
