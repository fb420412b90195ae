using K2RL.Common;
using K2RL.Common.Config;
using K2RL.Gym.Critic;
using K2RL.Model;
using K2RL.Model.Inference;
using K2RL.Trainer.Optim;
using K2RL.Trainer.Pretraining;

namespace K2RL.Trainer.Rl;

/// <summary>How an environment's responses are scored.</summary>
public enum RewardSource
{
    /// <summary>The environment's verifier when it has one, else the critic.</summary>
    Auto,

    /// <summary>The environment's own reward (its verifier).</summary>
    Verifier,

    /// <summary>The self-critique rubric reward (or the external judge that replaces it).</summary>
    Critic,
}

/// <summary>One environment of the mix (job file section `envs.NAME`).</summary>
public sealed record RlEnvSettings
{
    public required string Name { get; init; }

    /// <summary>Relative share of the iteration's prompts.</summary>
    public double Weight { get; init; } = 1;

    public int MinDifficulty { get; init; } = 1;

    public int MaxDifficulty { get; init; } = 1;

    /// <summary>The response budget in tokens (all assistant turns of an episode together).</summary>
    public int MaxResponseTokens { get; init; } = 128;

    /// <summary>Assistant turns per episode; an episode the environment has not ended by then is truncated.</summary>
    public int MaxTurns { get; init; } = 8;

    /// <summary>The environment's total time in one episode (its calls together); past it the episode fails.</summary>
    public double EpisodeTimeoutSeconds { get; init; } = 600;

    public RewardSource Reward { get; init; } = RewardSource.Auto;

    /// <summary>Task tags that pick the task-specific rubrics for the critic.</summary>
    public IReadOnlyList<string> Tags { get; init; } = [];
}

/// <summary>The self-critique rubric reward and its closed loop (job file section `critic`).</summary>
public sealed record CriticSettings
{
    /// <summary>"policy" (the policy itself through the rollout engine) or "http" (an external judge).</summary>
    public string Judge { get; init; } = "policy";

    public string? Endpoint { get; init; }

    public string JudgeModel { get; init; } = "judge";

    /// <summary>The external judge's connection (timeout, retries, concurrency, API key variable); the model is <see cref="JudgeModel"/>.</summary>
    public HttpJudgeOptions Http { get; init; } = new();

    /// <summary>"win_rate" or "bradley_terry": how pairwise outcomes become rewards.</summary>
    public string Mode { get; init; } = "win_rate";

    public bool BothOrders { get; init; } = true;

    /// <summary>The rubric folder (core, prescriptive and task rubrics).</summary>
    public string Rubrics { get; init; } = "configs/rubrics";

    /// <summary>Tokens of one verdict.</summary>
    public int MaxTokens { get; init; } = 48;

    /// <summary>Reward of a response that violates a mandatory rubric (it also caps the response at this).</summary>
    public double MandatoryPenalty { get; init; } = -0.5;

    /// <summary>Closed loop: pairs of verifiable responses (different verifier rewards) judged per iteration.</summary>
    public int CalibrationPairs { get; init; } = 4;

    /// <summary>Weight of the supervised critic loss on those pairs (the verifier's verdict as the target); 0: off.</summary>
    public double TrainWeight { get; init; }

    /// <summary>"full" (rubric criteria in the prompt) or "brief" (names and descriptions only: a comparison prompt that
    /// fits a small model's context).</summary>
    public RubricDetail RubricDetail { get; init; } = RubricDetail.Full;
}

/// <summary>An RL job, parsed and checked from YAML before any work starts.</summary>
public sealed record RlJobConfig
{
    /// <summary>The base: a pretrain or SFT run directory (its newest good checkpoint, via LATEST) or a checkpoint directory.</summary>
    public required string InitFrom { get; init; }

    /// <summary>When the job names a model config, the base's must match it.</summary>
    public string? ModelPath { get; init; }

    public ulong Seed { get; init; } = 1;

    public int Iterations { get; init; } = 100;

    public int PromptsPerIteration { get; init; } = 16;

    /// <summary>K: responses per prompt.</summary>
    public int SamplesPerPrompt { get; init; } = 8;

    public required IReadOnlyList<RlEnvSettings> Envs { get; init; }

    public double Tau { get; init; } = 0.1;

    public bool LengthNormalized { get; init; } = true;

    /// <summary>
    /// Routing replay: the trainer's forward sends each token to the experts the rollout engine used when it sampled
    /// (the engine keeps a routing record), so a near-tie in the router cannot flip an expert between sampling and
    /// training. On by default.
    /// </summary>
    public bool RoutingReplay { get; init; } = true;

    /// <summary>Optimizer steps per iteration (the iteration's groups are split among them).</summary>
    public int MiniBatches { get; init; } = 1;

    /// <summary>
    /// Leave groups whose K rewards are all equal (no advantage) out of the trainer's forward and backward. With one
    /// mini-batch their gradient is zero up to rounding (each token's weight is −2τ²·logρ/(K·P·n), logρ being the
    /// train/inference mismatch, ~1e-6), so the update is the same for less work; the loss stays a mean over all P
    /// groups. With more mini-batches it drops the small pull toward π_old such groups add after the first step. On by default.
    /// </summary>
    public bool SkipUniformGroups { get; init; } = true;

    /// <summary>Rows (one response each) per forward/backward micro-batch.</summary>
    public int MicroBatchRows { get; init; } = 16;

    /// <summary>Budget control: a truncated response's reward becomes min(r, this).</summary>
    public double TruncationReward { get; init; } = -0.5;

    /// <summary>Reward of an episode whose environment threw or timed out.</summary>
    public double FailureReward { get; init; }

    public double PtxLambda { get; init; } = 0.1;

    public int PtxBatchSize { get; init; } = 4;

    public int PtxSeqLen { get; init; } = 256;

    public DataSettings PtxData { get; init; } = new();

    public TemperatureSchedule Temperature { get; init; } = new();

    public WeightPrecision RolloutWeights { get; init; } = WeightPrecision.F32;

    /// <summary>Generated tokens per iteration after which unfinished episodes pause (0: no limit).</summary>
    public long IterationTokenBudget { get; init; }

    /// <summary>rollout.workers: a redis:// URL sends generation to rollout workers (docs/SCALE_OUT.md); null: in-process.</summary>
    public string? Workers { get; init; }

    /// <summary>rollout.transport: how the workers get the weights, "shm" (one node) or "net" (pushed to their addresses).</summary>
    public string WeightTransport { get; init; } = "shm";

    /// <summary>rollout.shm_name: the shared-memory file /dev/shm/k2rl-weights-NAME (shm transport).</summary>
    public string ShmName { get; init; } = "k2rl-rl";

    /// <summary>rollout.queue: the name under which this job's keys live in Redis (NAME:pending, ...); workers take
    /// <c>--queue NAME</c>. Two jobs on one Redis database need two names.</summary>
    public string RedisQueue { get; init; } = "k2rl";

    public double StepTimeoutSeconds { get; init; } = 30;

    public float TopP { get; init; } = 1f;

    public CriticSettings Critic { get; init; } = new();

    public OptimizerSettings Optimizer { get; init; } = new() { Lr = 0.002f };

    public float BiasGamma { get; init; } = ExpertBalance.DefaultGamma;

    public int EvalEvery { get; init; } = 10;

    public int EvalTasks { get; init; } = 50;

    public IReadOnlyList<int> EvalDifficulties { get; init; } = [1, 2];

    public int CheckpointEvery { get; init; } = 10;

    public int KeepCheckpoints { get; init; } = 3;

    public int MaxBadSteps { get; init; } = 3;

    public int Threads { get; init; }

    public string File { get; init; } = "";

    public string SourceText { get; init; } = "";

    /// <param name="initFrom">replaces the file's init_from (k2rl demo trains the base first); it need not exist yet.</param>
    public static RlJobConfig Load(string path, IReadOnlyCollection<string> envNames, IReadOnlyCollection<string> syntheticKinds,
        string? initFrom = null)
    {
        if (!System.IO.File.Exists(path))
        {
            throw new ConfigException($"job file not found: {path}");
        }

        return Parse(System.IO.File.ReadAllText(path), path, envNames, syntheticKinds, initFrom);
    }

    public static RlJobConfig Parse(string text, string file, IReadOnlyCollection<string> envNames, IReadOnlyCollection<string> syntheticKinds,
        string? initFrom = null)
    {
        var r = YamlReader.Parse(text, file);
        string? init = r.OptionalStr("init_from") ?? initFrom
            ?? throw r.Missing("init_from", "a pretrain or SFT run directory, or a checkpoint directory");
        string initDir = initFrom is not null ? Path.GetFullPath(initFrom) : ResolveDirectoryNear(init, file)
            ?? throw new ConfigException($"{r.At("init_from")}: \"init_from\": no directory {init} (looked relative to the working directory and the job file)");
        string? modelRef = r.OptionalStr("model");
        string? modelPath = modelRef is null ? null : JobConfig.ResolvePath(modelRef, file)
            ?? throw new ConfigException($"{r.At("model")}: \"model\": no file {modelRef}");

        int iterations = r.Int("iterations", 100, 1);
        var envs = ParseEnvs(r.Section("envs"), envNames, r.At("envs"));

        var obj = r.Section("objective");
        double tau = obj.Float("tau", 0.1f, 0, 100, minExclusive: true);
        bool lengthNormalized = obj.Bool("length_normalized", true);
        bool routingReplay = obj.Bool("routing_replay", true);
        int miniBatches = obj.Int("minibatches", 1, 1, 1024);
        bool skipUniform = obj.Bool("skip_uniform_groups", true);
        int microRows = obj.Int("micro_batch_rows", 16, 1, 4096);
        obj.RejectUnknown();

        var budget = r.Section("budget");
        double truncation = budget.Float("truncation_reward", -0.5f);
        double failure = budget.Float("failure_reward", 0f);
        budget.RejectUnknown();

        var ptx = r.Section("ptx");
        double lambda = ptx.Float("lambda", 0.1f, 0, 100);
        int ptxBatch = ptx.Int("batch_size", 4, 1, 4096);
        int ptxSeq = ptx.Int("seq_len", 256, 2);
        var ptxData = JobConfig.ParseData(ptx.Section("data"), file, syntheticKinds);
        ptx.RejectUnknown();
        if (lambda > 0 && ptxData.SyntheticTasks.Count == 0 && ptxData.Files.Count == 0)
        {
            throw new ConfigException($"{r.At("ptx")}: \"ptx.data\" names no source while ptx.lambda > 0: list synthetic tasks or files");
        }

        var t = r.Section("temperature");
        var temperature = new TemperatureSchedule
        {
            Kind = t.Str("kind", "exponential", TemperatureSchedule.Kinds),
            Start = t.Float("start", 1.2f, 0, 10),
            End = t.Float("end", 0.8f, 0, 10),
            Horizon = t.Int("horizon", iterations, 1),
        };
        t.RejectUnknown();
        if (temperature.Kind == "exponential" && (temperature.Start <= 0 || temperature.End <= 0))
        {
            throw new ConfigException($"{r.At("temperature")}: an exponential temperature schedule needs start and end > 0");
        }

        var ro = r.Section("rollout");
        string weights = ro.Str("weights", "f32", "f32", "bf16");
        long tokenBudget = ro.Long("iteration_token_budget", 0);
        if (tokenBudget < 0)
        {
            throw new ConfigException($"{ro.At("iteration_token_budget")}: \"rollout.iteration_token_budget\" must be >= 0 (0: no limit)");
        }

        double stepTimeout = ro.Float("step_timeout_s", 30f, 0, 3600, minExclusive: true);
        float topP = ro.Float("top_p", 1f, 0, 1, minExclusive: true);
        var (workers, transport, shmName, queue) = ParseWorkers(ro);
        ro.RejectUnknown();

        var c = r.Section("critic");
        var critic = new CriticSettings
        {
            Judge = c.Str("judge", "policy", "policy", "http"),
            Endpoint = c.OptionalStr("endpoint"),
            JudgeModel = c.Str("model", "judge"),
            Http = new HttpJudgeOptions
            {
                Timeout = TimeSpan.FromSeconds(c.Float("timeout_s", 60f, 0, 3600, minExclusive: true)),
                Retries = c.Int("retries", 2, 0, 20),
                MaxConcurrency = c.Int("max_concurrency", 4, 1, 256),
                ApiKeyEnv = c.OptionalStr("api_key_env"),
            },
            Mode = c.Str("mode", "win_rate", "win_rate", "bradley_terry"),
            BothOrders = c.Bool("both_orders", true),
            Rubrics = c.Str("rubrics", "configs/rubrics"),
            MaxTokens = c.Int("max_tokens", 48, 1, 4096),
            MandatoryPenalty = c.Float("mandatory_penalty", -0.5f),
            CalibrationPairs = c.Int("calibration_pairs", 4, 0, 4096),
            TrainWeight = c.Float("train_weight", 0f, 0, 100),
            RubricDetail = c.Str("rubric_detail", "full", "full", "brief") == "brief" ? RubricDetail.Brief : RubricDetail.Full,
        };
        c.RejectUnknown();
        if (c.OptionalStr("rubrics") is { } rubricDir && !Directory.Exists(rubricDir))
        {
            throw new ConfigException($"{c.At("rubrics")}: \"critic.rubrics\" is not a directory: {rubricDir} (relative paths are taken from the working directory, {Environment.CurrentDirectory})");
        }

        if (critic.Judge == "http" && critic.Endpoint is null)
        {
            throw new ConfigException($"{r.At("critic")}: \"critic.judge: http\" needs \"critic.endpoint\" (an OpenAI-compatible chat-completions URL)");
        }

        if (critic.Endpoint is { } endpoint && !(Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"))
        {
            throw new ConfigException($"{c.At("endpoint")}: \"critic.endpoint\" must be an http:// or https:// URL, got \"{endpoint}\"");
        }

        var optimizer = JobConfig.ParseOptimizer(r.Section("optimizer"), new OptimizerSettings { Lr = 0.002f });
        var bal = r.Section("balance");
        float biasGamma = bal.Float("bias_gamma", ExpertBalance.DefaultGamma, 0, 1);
        bal.RejectUnknown();

        var ev = r.Section("eval");
        int evalEvery = ev.Int("every", 10, 0);
        int evalTasks = ev.Int("tasks", 50, 1, 100_000);
        var evalDifficulties = ev.StrList("difficulties", ["1", "2"])
            .Select(s => int.TryParse(s, out int d) && d >= 1 && d <= 10 ? d
                : throw new ConfigException($"{ev.At("difficulties")}: \"eval.difficulties\" entries must be integers in [1, 10], got \"{s}\""))
            .ToArray();
        ev.RejectUnknown();

        var ck = r.Section("checkpoint");
        int every = ck.Int("every_iterations", 10, 1);
        int keep = ck.Int("keep", 3, 1);
        ck.RejectUnknown();

        var job = new RlJobConfig
        {
            InitFrom = initDir,
            ModelPath = modelPath,
            Seed = (ulong)r.Long("seed", 1),
            Iterations = iterations,
            PromptsPerIteration = r.Int("prompts_per_iteration", 16, 1, 100_000),
            SamplesPerPrompt = r.Int("samples_per_prompt", 8, 2, 1024),
            Envs = envs,
            Tau = tau,
            LengthNormalized = lengthNormalized,
            RoutingReplay = routingReplay,
            MiniBatches = miniBatches,
            SkipUniformGroups = skipUniform,
            MicroBatchRows = microRows,
            TruncationReward = truncation,
            FailureReward = failure,
            PtxLambda = lambda,
            PtxBatchSize = ptxBatch,
            PtxSeqLen = ptxSeq,
            PtxData = ptxData,
            Temperature = temperature,
            RolloutWeights = weights == "bf16" ? WeightPrecision.Bf16 : WeightPrecision.F32,
            IterationTokenBudget = tokenBudget,
            Workers = workers,
            WeightTransport = transport,
            ShmName = shmName,
            RedisQueue = queue,
            StepTimeoutSeconds = stepTimeout,
            TopP = topP,
            Critic = critic,
            Optimizer = optimizer,
            BiasGamma = biasGamma,
            EvalEvery = evalEvery,
            EvalTasks = evalTasks,
            EvalDifficulties = evalDifficulties,
            CheckpointEvery = every,
            KeepCheckpoints = keep,
            MaxBadSteps = r.Int("max_bad_steps", 3, 1),
            Threads = r.Int("threads", 0, 0, 1024),
            File = file,
            SourceText = text,
        };
        r.RejectUnknown();
        if (job.MiniBatches > job.PromptsPerIteration)
        {
            throw new ConfigException($"{r.At("objective")}: \"objective.minibatches\" {job.MiniBatches} exceeds prompts_per_iteration {job.PromptsPerIteration}");
        }

        return job;
    }

    /// <summary>rollout.workers ("embedded" or a redis:// URL), rollout.transport (shm | net), rollout.shm_name and rollout.queue.</summary>
    private static (string? Workers, string Transport, string ShmName, string Queue) ParseWorkers(YamlReader ro)
    {
        string workers = ro.Str("workers", "embedded");
        string transport = ro.Str("transport", "shm", "shm", "net");
        string shmName = ro.Str("shm_name", "k2rl-rl");
        string queue = ro.Str("queue", "k2rl");
        if (!K2RL.Common.Redis.RedisWorkQueue.IsQueueName(queue))
        {
            throw new ConfigException($"{ro.At("queue")}: \"rollout.queue\" must be {K2RL.Common.Redis.RedisWorkQueue.QueueNameRule}");
        }

        if (workers == "embedded")
        {
            return (null, transport, shmName, queue);
        }

        try
        {
            K2RL.Common.Redis.RedisConnection.Parse(workers);
        }
        catch (ConfigException e)
        {
            throw new ConfigException($"{ro.At("workers")}: \"rollout.workers\" must be \"embedded\" or a Redis URL: {e.Message}");
        }

        try
        {
            K2RL.CheckpointEngine.SharedMemoryWeightPublisher.PathOf(shmName);   // the shared-memory file's own name rule
        }
        catch (ConfigException e)
        {
            throw new ConfigException($"{ro.At("shm_name")}: \"rollout.shm_name\": {e.Message}");
        }

        return (workers, transport, shmName, queue);
    }

    private static List<RlEnvSettings> ParseEnvs(YamlReader section, IReadOnlyCollection<string> envNames, string at)
    {
        var keys = section.Keys();
        if (keys.Count == 0)
        {
            throw new ConfigException($"{at}: \"envs\" must name at least one environment (known: {string.Join(", ", envNames.Order(StringComparer.Ordinal))})");
        }

        var envs = new List<RlEnvSettings>();
        foreach (var (name, keyAt) in keys)
        {
            if (!envNames.Contains(name))
            {
                throw new ConfigException(
                    $"{keyAt}: \"envs.{name}\": no environment named \"{name}\" (registered: {string.Join(", ", envNames.Order(StringComparer.Ordinal))})");
            }

            var e = section.Section(name);
            var difficulty = e.StrList("difficulty", ["1", "1"]);
            if (difficulty.Count != 2 || !int.TryParse(difficulty[0], out int lo) || !int.TryParse(difficulty[1], out int hi) || lo < 1 || hi < lo || hi > 10)
            {
                throw new ConfigException($"{e.At("difficulty")}: \"envs.{name}.difficulty\" must be [min, max] with 1 <= min <= max <= 10");
            }

            string reward = e.Str("reward", "auto", "auto", "verifier", "critic");
            envs.Add(new RlEnvSettings
            {
                Name = name,
                Weight = e.Float("weight", 1f, 0, 1e6, minExclusive: true),
                MinDifficulty = lo,
                MaxDifficulty = hi,
                MaxResponseTokens = e.Int("max_response_tokens", 128, 1, 1 << 20),
                MaxTurns = e.Int("max_turns", 8, 1, 1000),
                EpisodeTimeoutSeconds = e.Float("episode_timeout_s", 600f, 0, 86_400, minExclusive: true),
                Reward = reward switch { "verifier" => RewardSource.Verifier, "critic" => RewardSource.Critic, _ => RewardSource.Auto },
                Tags = e.StrList("tags", []),
            });
            e.RejectUnknown();
        }

        return envs;
    }

    /// <summary>An existing directory: as given, relative to the working directory, or to the job file's folder or one above it.</summary>
    internal static string? ResolveDirectoryNear(string path, string jobFile)
    {
        if (Path.IsPathRooted(path) || Directory.Exists(path))
        {
            return Directory.Exists(path) ? Path.GetFullPath(path) : null;
        }

        var dir = new DirectoryInfo(Path.GetDirectoryName(Path.GetFullPath(jobFile))!);
        while (dir is not null)
        {
            string candidate = Path.Combine(dir.FullName, path);
            if (Directory.Exists(candidate))
            {
                return candidate;
            }

            dir = dir.Parent;
        }

        return null;
    }
}
