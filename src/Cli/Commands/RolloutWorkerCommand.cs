using System.CommandLine;
using K2RL.Common.Logging;
using K2RL.Common.Metrics;
using K2RL.Common.Rpc;
using K2RL.Rollout;
using K2RL.Gym;
using K2RL.Rollout.Workers;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl rollout-worker --redis URL --weights shm|net [--shm NAME] [--listen HOST:PORT] [--id ID] [--metrics HOST:PORT] [--json]</c>: a rollout
/// worker for an RL job whose job file has <c>rollout.workers: redis://…</c> (docs/SCALE_OUT.md). It takes the model
/// and tokenizer from what the trainer publishes in Redis, the weights from the checkpoint engine, and runs until
/// SIGINT/SIGTERM; with --json it then prints one JSON object: its final stats.
/// </summary>
public sealed class RolloutWorkerCommand : ICommandProvider
{
    public string Group => "";

    public IEnumerable<Command> Build(CliContext context)
    {
        var redis = new Option<string>("--redis") { Description = "The job's Redis: redis://HOST[:PORT][/DB] (a password: the environment variable K2RL_REDIS_PASSWORD)", Required = true };
        var weights = new Option<string>("--weights") { Description = "How weights arrive: shm (this node's /dev/shm) or net (pushed to --listen)", DefaultValueFactory = _ => "shm" };
        weights.AcceptOnlyFromAmong("shm", "net");
        var queue = new Option<string>("--queue") { Description = "The job's rollout.queue: the name its keys live under in Redis", DefaultValueFactory = _ => "k2rl" };
        var shm = new Option<string?>("--shm") { Description = "Shared-memory name (default: the one the trainer published)" };
        var listen = new Option<string?>("--listen") { Description = "HOST:PORT to serve k2rl.v1.Checkpoint and grpc.health.v1 on (net weights: required)" };
        var lane = new Option<string>("--data-lane-port")
        {
            Description = "Net weights: the port of the checkpoint data lane (raw TCP beside --listen, on its host; 0: any free one; off: pushes over gRPC)",
            DefaultValueFactory = _ => "0",
        };
        var id = new Option<string?>("--id") { Description = "Worker id (default: hostname-pid)" };
        var lease = new Option<double>("--lease-s") { Description = "Lease length in seconds (renewed every third of it)", DefaultValueFactory = _ => 10 };
        var batch = new Option<int>("--batch") { Description = "Items leased and run together at most", DefaultValueFactory = _ => 64 };
        var hold = new Option<int>("--hold-ms") { Description = "Fault-injection tests: wait this long after leasing", Hidden = true };
        var metrics = new Option<string?>("--metrics") { Description = "Serve Prometheus metrics (k2rl_worker_*) on http://HOST:PORT/metrics" };
        var json = new Option<bool>("--json") { Description = "On exit, print one JSON object (the worker's stats) on stdout" };
        var command = new Command("rollout-worker", "Run episodes for an RL job's Redis work queue (rollout.workers: redis://…)")
        {
            redis, queue, weights, shm, listen, lane, id, lease, batch, hold, metrics, json,
        };
        command.SetAction(async (parse, ct) =>
        {
            string queueName = parse.GetValue(queue)!;
            if (!Common.Redis.RedisWorkQueue.IsQueueName(queueName))
            {
                throw new Common.ConfigException($"--queue '{queueName}' must be {Common.Redis.RedisWorkQueue.QueueNameRule}");
            }

            var options = new RolloutWorkerOptions
            {
                Url = parse.GetValue(redis)!,
                Prefix = queueName + ":",
                Weights = parse.GetValue(weights)!,
                ShmName = parse.GetValue(shm),
                Listen = parse.GetValue(listen),
                DataLanePort = CheckpointEngine.NetworkReceiverOptions.ParseDataLanePort(parse.GetValue(lane)!),
                Lease = TimeSpan.FromSeconds(parse.GetValue(lease)),
                MaxBatch = parse.GetValue(batch),
                Hold = TimeSpan.FromMilliseconds(parse.GetValue(hold)),
            };
            if (parse.GetValue(id) is { } given)
            {
                options = options with { Id = given };
            }

            var metricsAt = parse.GetValue(metrics) is { } m ? HostPort.Parse(m, "--metrics") : null;
            using var log = K2Log.Create(context.LogLevel);
            using var stop = new StopSignal(log, "stopping (leases held now expire and go to other workers)");
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, stop.Token);
            await using var worker = await RolloutWorker.ConnectAsync(options, GymRegistry.CreateDefault(), log);
            await using var exporter = metricsAt is null ? null : await WorkerMetricsExporter.StartAsync(worker, metricsAt, log, linked.Token);
            await worker.RunAsync(linked.Token);
            var stats = worker.Stats();
            context.Out.WriteLine(parse.GetValue(json) ? stats.ToJson() : $"{stats.ItemsDone} items, {stats.TokensGenerated} tokens");
            return 0;
        });
        yield return command;
    }
}

/// <summary>The worker's <c>--metrics</c> endpoint: <see cref="RolloutWorkerMetrics"/> brought to the worker's stats every second.</summary>
internal sealed class WorkerMetricsExporter : IAsyncDisposable
{
    private readonly MetricsServer server;
    private readonly CancellationTokenSource stop = new();
    private readonly Task loop;

    private WorkerMetricsExporter(MetricsServer server, RolloutWorker worker, RolloutWorkerMetrics metrics)
    {
        this.server = server;
        loop = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                metrics.Observe(worker.Stats());
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), stop.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        });
    }

    public static async Task<WorkerMetricsExporter> StartAsync(RolloutWorker worker, HostPort listen, Serilog.ILogger log, CancellationToken ct)
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var metrics = new RolloutWorkerMetrics(registry);
        metrics.Observe(worker.Stats());
        var server = await MetricsServer.StartAsync(listen, registry, log, ct);   // logs its address
        return new WorkerMetricsExporter(server, worker, metrics);
    }

    public async ValueTask DisposeAsync()
    {
        await stop.CancelAsync();
        await loop;
        await server.DisposeAsync();
        stop.Dispose();
    }
}
