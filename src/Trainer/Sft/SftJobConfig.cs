using K2RL.Common;
using K2RL.Common.Config;
using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Trainer.Checkpointing;
using K2RL.Trainer.Optim;
using K2RL.Trainer.Pretraining;
using K2RL.Trainer.Rl;

namespace K2RL.Trainer.Sft;

/// <summary>What to do with a record whose rendered conversation is longer than seq_len + 1 tokens.</summary>
public enum OverlongPolicy
{
    /// <summary>Keep its first seq_len + 1 tokens (the tail, and the loss on it, is lost); counted and logged.</summary>
    Truncate,

    /// <summary>Leave the record out; counted and logged.</summary>
    Drop,
}

/// <summary>The in-job held-out evaluation (job file section `eval`).</summary>
public sealed record SftEvalSettings
{
    /// <summary>Steps between evaluations (the last step always evaluates when <see cref="Envs"/> or the held-out loss is on); 0: off.</summary>
    public int Every { get; init; } = 50;

    /// <summary>Environments with a verifier whose greedy held-out accuracy is measured (as <c>k2rl gym eval</c>).</summary>
    public IReadOnlyList<string> Envs { get; init; } = [];

    /// <summary>Held-out tasks per environment and difficulty (seeds 0..tasks−1 of the held-out split).</summary>
    public int Tasks { get; init; } = 50;

    public IReadOnlyList<int> Difficulties { get; init; } = [1, 2];

    /// <summary>The token budget of one assistant turn (gym eval's --max-tokens).</summary>
    public int MaxTokens { get; init; } = 256;
}

/// <summary>An SFT job, parsed and checked from YAML (the base resolved, its config read) before any work starts.</summary>
public sealed record SftJobConfig
{
    /// <summary>The base checkpoint directory, resolved from init_from (a run directory's newest good checkpoint).</summary>
    public required string InitFrom { get; init; }

    public required ModelConfig Model { get; init; }

    /// <summary>The dataset: a .jsonl file or a directory of them (<see cref="K2RL.Gym.Synthesis.SftDataset"/>).</summary>
    public required string Data { get; init; }

    /// <summary>Records kept out of training (after a seeded shuffle) for the held-out SFT loss.</summary>
    public int HeldOutRecords { get; init; }

    public OverlongPolicy Overlong { get; init; } = OverlongPolicy.Truncate;

    public ulong Seed { get; init; } = 1;

    /// <summary>The longest training row (inputs); a record of more than SeqLen + 1 tokens is truncated or dropped.</summary>
    public int SeqLen { get; init; } = 512;

    /// <summary>Records (rows, one record each) per micro-batch.</summary>
    public int BatchSize { get; init; } = 8;

    public int GradAccumSteps { get; init; } = 1;

    /// <summary>Passes over the training records; the step count follows from it unless <see cref="Steps"/> is set.</summary>
    public double Epochs { get; init; } = 1;

    /// <summary>An explicit optimizer-step count (the data cycles through epochs as needed); null: from <see cref="Epochs"/>.</summary>
    public int? Steps { get; init; }

    public OptimizerSettings Optimizer { get; init; } = new();

    public LrSchedule Schedule { get; init; } = new();

    public float BiasGamma { get; init; } = ExpertBalance.DefaultGamma;

    public SftEvalSettings Eval { get; init; } = new();

    public int CheckpointEvery { get; init; } = 100;

    public int KeepCheckpoints { get; init; } = 3;

    public int MaxBadSteps { get; init; } = 3;

    public int Threads { get; init; }

    public string File { get; init; } = "";

    public string SourceText { get; init; } = "";

    /// <summary>Optimizer steps for <paramref name="trainRecords"/> training records.</summary>
    public int TotalSteps(int trainRecords) =>
        Steps ?? Math.Max(1, (int)Math.Ceiling(Epochs * trainRecords / ((double)BatchSize * GradAccumSteps)));

    /// <param name="initFrom">replaces the file's init_from (k2rl demo trains the base first; it must exist by now).</param>
    /// <param name="data">replaces the file's data.path (k2rl demo --sft-data).</param>
    public static SftJobConfig Load(string path, IReadOnlyCollection<string> evalEnvs, string? initFrom = null, string? data = null)
    {
        if (!System.IO.File.Exists(path))
        {
            throw new ConfigException($"job file not found: {path}");
        }

        return Parse(System.IO.File.ReadAllText(path), path, evalEnvs, initFrom, data);
    }

    /// <param name="evalEnvs">the environments eval.envs may name (those with a verifier).</param>
    public static SftJobConfig Parse(string text, string file, IReadOnlyCollection<string> evalEnvs, string? initFrom = null, string? data = null)
    {
        var r = YamlReader.Parse(text, file);
        var (initDir, model) = ResolveBase(r, file, initFrom);

        var d = r.Section("data");
        string? filePath = d.OptionalStr("path");
        string dataRef = data ?? filePath ?? throw d.Missing("path", "a .jsonl file or a directory of them");
        string dataPath = ResolveData(dataRef, file)
            ?? throw new ConfigException($"{d.At("path")}: \"data.path\": no file or directory {dataRef} (looked relative to the working directory and the job file)");
        int heldOut = d.Int("held_out_records", 0, 0, 1_000_000);
        var overlong = d.Str("overlong", "truncate", "truncate", "drop") == "drop" ? OverlongPolicy.Drop : OverlongPolicy.Truncate;
        d.RejectUnknown();

        int seqLen = r.Int("seq_len", 512, 2);
        if (seqLen > model.MaxPositionEmbeddings - 1)
        {
            throw new ConfigException($"{r.At("seq_len")}: \"seq_len\" {seqLen} exceeds the base's max_position_embeddings {model.MaxPositionEmbeddings} - 1");
        }

        double epochs = r.Float("epochs", 1f, 0, 10_000, minExclusive: true);
        int? steps = r.OptionalStr("steps") is null ? null : r.Int("steps", 1, 1);
        var optimizer = JobConfig.ParseOptimizer(r.Section("optimizer"), new OptimizerSettings { Lr = 0.005f });
        var schedule = JobConfig.ParseSchedule(r.Section("schedule"), new LrSchedule { Kind = "cosine", WarmupSteps = 10 });
        var bal = r.Section("balance");
        float biasGamma = bal.Float("bias_gamma", ExpertBalance.DefaultGamma, 0, 1);
        bal.RejectUnknown();

        var eval = ParseEval(r.Section("eval"), evalEnvs);
        var ck = r.Section("checkpoint");
        int every = ck.Int("every_steps", 100, 1);
        int keep = ck.Int("keep", 3, 1);
        ck.RejectUnknown();

        var job = new SftJobConfig
        {
            InitFrom = initDir,
            Model = model,
            Data = dataPath,
            HeldOutRecords = heldOut,
            Overlong = overlong,
            Seed = (ulong)r.Long("seed", 1),
            SeqLen = seqLen,
            BatchSize = r.Int("batch_size", 8, 1, 4096),
            GradAccumSteps = r.Int("grad_accum_steps", 1, 1, 4096),
            Epochs = epochs,
            Steps = steps,
            Optimizer = optimizer,
            Schedule = schedule,
            BiasGamma = biasGamma,
            Eval = eval,
            CheckpointEvery = every,
            KeepCheckpoints = keep,
            MaxBadSteps = r.Int("max_bad_steps", 3, 1),
            Threads = r.Int("threads", 0, 0, 1024),
            File = file,
            SourceText = text,
        };
        r.RejectUnknown();
        return job;
    }

    /// <summary>
    /// init_from resolved by the one checkpoint resolver (<see cref="CheckpointPath.Resolve"/>: a run directory's newest good
    /// checkpoint, or a checkpoint directory) and its config; a `model` the job names must equal it.
    /// </summary>
    private static (string Dir, ModelConfig Model) ResolveBase(YamlReader r, string file, string? initFrom)
    {
        string? fileInit = r.OptionalStr("init_from");
        string init = initFrom ?? fileInit ?? throw r.Missing("init_from", "a pretrain run directory or checkpoint directory");
        string where = $"{r.At("init_from")}: \"init_from\" {init}";
        string dir = initFrom is not null ? Path.GetFullPath(initFrom) : RlJobConfig.ResolveDirectoryNear(init, file)
            ?? throw new ConfigException($"{where}: no such directory (looked relative to the working directory and the job file)");
        ModelConfig model;
        try
        {
            dir = CheckpointPath.Resolve(dir);
            model = ModelConfig.Load(Path.Combine(dir, TrainingFiles.ConfigFile));
        }
        catch (K2Exception e)
        {
            throw new ConfigException($"{where}: {e.Message}", e);
        }

        if (r.OptionalStr("model") is { } modelRef)
        {
            string modelPath = JobConfig.ResolvePath(modelRef, file)
                ?? throw new ConfigException($"{r.At("model")}: \"model\": no file {modelRef}");
            if (ModelConfig.Load(modelPath).Differences(model) is { Count: > 0 } differences)
            {
                throw new ConfigException($"{r.At("model")}: \"model\" {modelPath} does not match the base {dir} (job vs base: {string.Join("; ", differences)})");
            }
        }

        return (dir, model);
    }

    private static SftEvalSettings ParseEval(YamlReader ev, IReadOnlyCollection<string> evalEnvs)
    {
        var known = evalEnvs.Order(StringComparer.Ordinal).ToArray();
        var eval = new SftEvalSettings
        {
            Every = ev.Int("every", 50, 0),
            Envs = ev.StrList("envs", [], known),
            Tasks = ev.Int("tasks", 50, 1, 100_000),
            Difficulties = ev.StrList("difficulties", ["1", "2"])
                .Select(s => int.TryParse(s, out int x) && x >= 1 && x <= 10 ? x
                    : throw new ConfigException($"{ev.At("difficulties")}: \"eval.difficulties\" entries must be integers in [1, 10], got \"{s}\""))
                .ToArray(),
            MaxTokens = ev.Int("max_tokens", 256, 1, 1 << 20),
        };
        ev.RejectUnknown();
        return eval;
    }

    private static string? ResolveData(string path, string jobFile) =>
        RlJobConfig.ResolveDirectoryNear(path, jobFile) ?? JobConfig.ResolvePath(path, jobFile);
}
