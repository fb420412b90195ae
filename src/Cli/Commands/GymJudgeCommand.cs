using System.CommandLine;
using System.Globalization;
using K2RL.Common;
using K2RL.Gym.Critic;
using K2RL.Gym.Critic.Workbench;
using K2RL.Model.Inference;
using K2RL.Rollout;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl gym judge --rubrics DIR --input FILE.jsonl --judge checkpoint:DIR|http(s)://URL [--judge ...] [--model NAME]
/// [--tags T ...] [--both-orders] [--json] [--report OUT.html]</c>: the evaluator's rubric workbench
/// (<see cref="JudgeWorkbench"/>). Each input line's K responses are compared pairwise by the judge(s) with the RL job's
/// own comparison prompts; per prompt every verdict with the judge's text, win rate, Bradley–Terry scores and the
/// unparseable count; overall position-bias agreement, critic accuracy against verifier rewards and, with two judges,
/// their agreement. A <c>checkpoint:</c> judge is the policy as its own critic (<see cref="EngineJudge"/> on the
/// checkpoint's rollout engine, loaded as <c>gym eval --checkpoint</c> does); an http(s) judge is any OpenAI-compatible
/// chat-completions endpoint (<see cref="HttpJudge"/>).
/// </summary>
public sealed class GymJudgeCommand : ICommandProvider
{
    public string Group => "gym";

    internal sealed record Options
    {
        public string Rubrics { get; init; } = "configs/rubrics";

        public required string Input { get; init; }

        /// <summary>One or two: <c>checkpoint:DIR</c> or an http(s) URL.</summary>
        public required IReadOnlyList<string> Judges { get; init; }

        /// <summary>The request's model name for http judges: one for all, or one per judge.</summary>
        public IReadOnlyList<string> Models { get; init; } = [];

        /// <summary>Environment variable holding an http judge's API key: one for all, or one per judge.</summary>
        public IReadOnlyList<string> ApiKeyEnvs { get; init; } = [];

        public IReadOnlyList<string> Tags { get; init; } = [];

        public bool BothOrders { get; init; }

        public bool Json { get; init; }

        public string? Report { get; init; }

        public double TimeoutSeconds { get; init; } = 60;

        public int Retries { get; init; } = 2;

        public int Concurrency { get; init; } = 4;

        /// <summary>A checkpoint judge's verdict budget in tokens.</summary>
        public int MaxTokens { get; init; } = 64;

        /// <summary>A checkpoint judge's engine batch.</summary>
        public int Batch { get; init; } = 16;

        public WeightPrecision Weights { get; init; } = WeightPrecision.F32;

        public RubricDetail RubricDetail { get; init; } = RubricDetail.Full;
    }

    public IEnumerable<Command> Build(CliContext context)
    {
        var rubrics = new Option<string>("--rubrics") { Description = "Rubric directory", DefaultValueFactory = _ => "configs/rubrics" };
        var input = new Option<string>("--input") { Description = "JSON Lines: {\"prompt\", \"responses\": [...], \"tags\"?, \"rewards\"?, \"id\"?} per line", Required = true };
        var judge = new Option<string[]>("--judge") { Description = "checkpoint:DIR (the policy as its own critic) or an OpenAI-compatible http(s)://.../v1/chat/completions URL; give it twice to compare two judges", Required = true };
        var model = new Option<string[]>("--model") { Description = "Model name sent to http judges (once for all, or once per --judge)" };
        var apiKeyEnv = new Option<string[]>("--api-key-env") { Description = "Environment variable holding an http judge's API key, sent as a bearer token, never printed (once for all, or once per --judge)" };
        var tags = new Option<string[]>("--tags") { Description = "Task tags added to every line's own (they pick task-specific rubrics)", AllowMultipleArgumentsPerToken = true };
        var bothOrders = new Option<bool>("--both-orders") { Description = "Ask every pair in both orders (A/B swapped): measures position bias" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
        var report = new Option<string?>("--report") { Description = "Write a self-contained HTML report here" };
        var timeout = new Option<double>("--timeout") { Description = "Seconds one http request may take", DefaultValueFactory = _ => 60 };
        var retries = new Option<int>("--retries") { Description = "Retries of an http request after a timeout, connection error, HTTP 408, 429 or 5xx", DefaultValueFactory = _ => 2 };
        var concurrency = new Option<int>("--concurrency") { Description = "http requests in flight at once, per judge", DefaultValueFactory = _ => 4 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "A checkpoint judge's verdict budget in tokens", DefaultValueFactory = _ => 64 };
        var batch = new Option<int>("--batch") { Description = "A checkpoint judge's engine batch", DefaultValueFactory = _ => 16 };
        var weights = WeightsOption.Create();
        var detail = new Option<string>("--rubric-detail")
        {
            Description = "full: rubric criteria in the prompt; brief: names and descriptions only (a prompt that fits a small model's context)",
            DefaultValueFactory = _ => "full",
        };
        detail.AcceptOnlyFromAmong("full", "brief");
        var command = new Command("judge", "Judge responses against rubrics with a checkpoint or an http judge, and see why")
        {
            rubrics, input, judge, model, apiKeyEnv, tags, bothOrders, json, report, timeout, retries, concurrency, maxTokens, batch, weights, detail,
        };
        command.SetAction((parse, ct) => Run(context, new Options
        {
            Rubrics = parse.GetValue(rubrics)!,
            Input = parse.GetValue(input)!,
            Judges = parse.GetValue(judge) ?? [],
            Models = parse.GetValue(model) ?? [],
            ApiKeyEnvs = parse.GetValue(apiKeyEnv) ?? [],
            Tags = parse.GetValue(tags) ?? [],
            BothOrders = parse.GetValue(bothOrders),
            Json = parse.GetValue(json),
            Report = parse.GetValue(report),
            TimeoutSeconds = parse.GetValue(timeout),
            Retries = parse.GetValue(retries),
            Concurrency = parse.GetValue(concurrency),
            MaxTokens = parse.GetValue(maxTokens),
            Batch = parse.GetValue(batch),
            Weights = WeightPrecisions.Parse(parse.GetValue(weights)!),
            RubricDetail = parse.GetValue(detail) == "brief" ? RubricDetail.Brief : RubricDetail.Full,
        }, ct));
        yield return command;
    }

    internal static async Task<int> Run(CliContext context, Options o, CancellationToken ct = default)
    {
        // Every check before a judge is built (a checkpoint judge reads its weights).
        Validate(o);
        var rubrics = RubricLoader.LoadDirectory(o.Rubrics);
        var items = JudgeInputReader.ReadFile(o.Input);
        var options = new WorkbenchOptions { BothOrders = o.BothOrders, ExtraTags = o.Tags, RubricSource = o.Rubrics, RubricDetail = o.RubricDetail };
        JudgeWorkbench.Check(rubrics, items, options);

        var judges = new List<WorkbenchJudge>();
        try
        {
            for (int i = 0; i < o.Judges.Count; i++)
            {
                judges.Add(CreateJudge(context, o, i, judges));
            }

            context.Error.WriteLine($"gym judge: {items.Count} prompts, {string.Join(" and ", judges.Select(j => j.Label))}, " +
                                    $"{(o.BothOrders ? "both orders" : "one order")}, rubrics from {o.Rubrics}");
            var result = await JudgeWorkbench.RunAsync(rubrics, items, judges, options, context.Error.WriteLine, ct);
            if (o.Report is not null)
            {
                WriteReport(o.Report, WorkbenchHtml.Render(result, $"{o.Input} judged against {o.Rubrics}"));
                context.Error.WriteLine($"report: {o.Report}");
            }

            if (o.Json)
            {
                var json = WorkbenchReport.ToJson(result);
                json["input"] = o.Input;
                json["rubrics"] = o.Rubrics;
                json["report"] = o.Report;
                context.Out.WriteLine(json.ToJsonString());
            }
            else
            {
                WorkbenchReport.WriteText(result, context.Out);
            }

            return 0;
        }
        finally
        {
            foreach (var j in judges)
            {
                (j.Judge as IDisposable)?.Dispose();
            }
        }
    }

    private static void Validate(Options o)
    {
        if (o.Judges.Count is < 1 or > 2)
        {
            throw new ConfigException($"--judge must be given once or twice (got {o.Judges.Count})");
        }

        if (o.Models.Count > o.Judges.Count || o.ApiKeyEnvs.Count > o.Judges.Count)
        {
            throw new ConfigException($"--model and --api-key-env are given once for all judges or once per --judge (got {o.Models.Count} and {o.ApiKeyEnvs.Count} for {o.Judges.Count} judges)");
        }

        if (!(o.TimeoutSeconds > 0) || o.TimeoutSeconds > 86_400 || o.Retries < 0 || o.Concurrency < 1 || o.MaxTokens < 1 || o.Batch < 1)
        {
            throw new ConfigException($"--timeout must be in (0, 86400] seconds, --retries >= 0, --concurrency, --max-tokens and --batch >= 1 " +
                                      $"(got {o.TimeoutSeconds.ToString(CultureInfo.InvariantCulture)}, {o.Retries}, {o.Concurrency}, {o.MaxTokens}, {o.Batch})");
        }

        foreach (string spec in o.Judges)
        {
            _ = ParseSpec(spec);
        }
    }

    /// <summary><c>checkpoint:DIR</c> → (DIR, null); an http(s) URL → (null, URL).</summary>
    private static (string? Checkpoint, Uri? Endpoint) ParseSpec(string spec)
    {
        if (spec.StartsWith("checkpoint:", StringComparison.Ordinal) && spec.Length > "checkpoint:".Length)
        {
            return (spec["checkpoint:".Length..], null);
        }

        if (Uri.TryCreate(spec, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https")
        {
            return (null, uri);
        }

        throw new ConfigException($"--judge '{spec}': expected checkpoint:DIR or an http(s):// chat-completions URL");
    }

    private static WorkbenchJudge CreateJudge(CliContext context, Options o, int i, IReadOnlyList<WorkbenchJudge> earlier)
    {
        var (checkpoint, endpoint) = ParseSpec(o.Judges[i]);
        IJudge judge;
        string label;
        if (checkpoint is not null)
        {
            var (_, tokenizer, engine) = CheckpointGeneration.LoadEngine(checkpoint, o.Batch, o.Weights, context.Warn);
            judge = new EngineJudge(engine, tokenizer, o.MaxTokens);
            label = "checkpoint:" + checkpoint;
        }
        else
        {
            var http = new HttpJudge(endpoint!, new HttpJudgeOptions
            {
                Model = PerJudge(o.Models, i) ?? "judge",
                ApiKeyEnv = PerJudge(o.ApiKeyEnvs, i),
                Timeout = TimeSpan.FromSeconds(o.TimeoutSeconds),
                Retries = o.Retries,
                MaxConcurrency = o.Concurrency,
            });
            judge = http;
            label = HttpJudge.Display(endpoint!);
        }

        return new WorkbenchJudge(earlier.Any(j => j.Label == label) ? $"{label} (#{i + 1})" : label, judge);
    }

    /// <summary>The judge's own value (one per judge), the shared one (one for all), or null.</summary>
    private static string? PerJudge(IReadOnlyList<string> values, int i) => values.Count switch
    {
        0 => null,
        1 => values[0],
        _ => values[i],
    };

    private static void WriteReport(string path, string html)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null)
        {
            Directory.CreateDirectory(dir);
        }

        string tmp = path + ".tmp";
        File.WriteAllText(tmp, html);
        File.Move(tmp, path, overwrite: true);
    }
}
