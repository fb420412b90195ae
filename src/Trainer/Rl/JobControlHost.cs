using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Common.Rpc;
using K2RL.Model.IO;
using Serilog;

namespace K2RL.Trainer.Rl;

/// <summary>
/// Serves job control (k2rl.v1.JobControl and grpc.health.v1.Health) for a running RL job and advertises it in
/// RUN_DIR/control.json = {"address", "pid", "token_required"} (plus "metrics", the scrape URL, when the job exports
/// metrics), written atomically once serving and removed on dispose.
/// Policy: a loopback bind needs no token unless one is configured; any other bind address requires one.
/// </summary>
public sealed class JobControlHost : IAsyncDisposable
{
    public const string ControlFile = "control.json";

    private readonly GrpcServer server;
    private readonly string file;

    private JobControlHost(GrpcServer server, string file)
    {
        this.server = server;
        this.file = file;
    }

    /// <summary>The address clients on this machine call.</summary>
    public Uri Address => server.Address;

    /// <summary>Throws a <see cref="ConfigException"/> when <paramref name="listen"/> is not loopback and no token is configured.</summary>
    public static void CheckPolicy(HostPort listen, BearerToken? token)
    {
        if (!listen.IsLoopback && token is null)
        {
            throw new ConfigException($"--control {listen} is not a loopback address: job control there requires a token " +
                $"(--control-token-file PATH or the environment variable {BearerToken.EnvironmentVariable}); refusing to start without one");
        }
    }

    public static async Task<JobControlHost> StartAsync(HostPort listen, BearerToken? token, JobControlState state, IWorkerPoolStatus pool,
        string runDir, ILogger log, Uri? metrics = null, CancellationToken ct = default)
    {
        CheckPolicy(listen, token);
        var server = await GrpcServer.Create(new GrpcServerOptions { Host = listen.Host, Port = listen.Port, Logger = log })
            .AddService(new JobControlService(state, pool, token, log))
            .StartAsync(ct).ConfigureAwait(false);
        string file = Path.Combine(runDir, ControlFile);
        var json = new JsonObject
        {
            ["address"] = server.Address.GetLeftPart(UriPartial.Authority),
            ["pid"] = Environment.ProcessId,
            ["token_required"] = token is not null,
        };
        if (metrics is not null)
        {
            json["metrics"] = metrics.ToString();
        }

        AtomicFile.WriteAllText(file, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        log.Information("job control on {Address} (token {Required:l}); k2rl job status --run-dir {RunDir:l}", server.Address,
            token is null ? "not required" : "required", runDir);
        return new JobControlHost(server, file);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            File.Delete(file);
        }
        catch (IOException)
        {
        }

        await server.DisposeAsync().ConfigureAwait(false);
    }
}
