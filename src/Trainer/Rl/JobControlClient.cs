using System.Text.Json;
using System.Text.Json.Nodes;
using Grpc.Core;
using K2RL.Common;
using K2RL.Common.Rpc;
using K2RL.Protos.V1;

namespace K2RL.Trainer.Rl;

/// <summary>What RUN_DIR/control.json says about a running job's control endpoint.</summary>
public sealed record ControlFileInfo(Uri Address, int Pid, bool TokenRequired);

/// <summary>The client side of job control: finds the endpoint through control.json and maps failures to clear errors.</summary>
public static class JobControlClient
{
    /// <summary>The actions of <c>k2rl job</c>.</summary>
    public static readonly string[] Actions = ["status", "pause", "drain", "resume", "stop"];

    /// <summary>Reads RUN_DIR/control.json; a missing one means the job is not running there.</summary>
    public static ControlFileInfo ReadControlFile(string runDir)
    {
        string path = Path.Combine(runDir, JobControlHost.ControlFile);
        if (!File.Exists(path))
        {
            throw new K2Exception(Directory.Exists(runDir)
                ? $"no {JobControlHost.ControlFile} in {runDir}: no RL job is running there (it has exited, or has not started serving yet)"
                : $"run directory {runDir} does not exist: the job was never started there");
        }

        try
        {
            var o = JsonNode.Parse(File.ReadAllText(path))?.AsObject() ?? throw new JsonException("not a JSON object");
            string address = o["address"]?.GetValue<string>() ?? throw new JsonException("no \"address\"");
            if (!Uri.TryCreate(address, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp)
            {
                throw new JsonException($"\"address\" {address} is not an http:// URL");
            }

            return new ControlFileInfo(uri, o["pid"]?.GetValue<int>() ?? 0, o["token_required"]?.GetValue<bool>() ?? false);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new CorruptFileException(path, $"not a job-control file: {e.Message}");
        }
    }

    /// <summary>Calls <paramref name="action"/> on the job at <paramref name="address"/>; connection and token failures are K2Exceptions saying so.</summary>
    public static async Task<JobStatus> CallAsync(Uri address, string action, BearerToken? token, TimeSpan timeout, CancellationToken ct = default)
    {
        using var channel = GrpcChannels.Create(address, new GrpcClientOptions { ConnectTimeout = timeout });
        var client = new JobControl.JobControlClient(channel);
        var options = new CallOptions(token?.Headers(), DateTime.UtcNow + timeout, ct);
        var request = new JobControlRequest();
        try
        {
            return action switch
            {
                "status" => await client.StatusAsync(request, options),
                "pause" => await client.PauseAsync(request, options),
                "drain" => await client.DrainAsync(request, options),
                "resume" => await client.ResumeAsync(request, options),
                "stop" => await client.StopAsync(request, options),
                _ => throw new ConfigException($"unknown job action '{action}' (one of {string.Join(", ", Actions)})"),
            };
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Unauthenticated)
        {
            throw new K2Exception($"job control at {address} refused the call (UNAUTHENTICATED): the token was " +
                (token is null ? "missing" : "wrong") + $"; give it with --token-file PATH or {BearerToken.EnvironmentVariable}", e);
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
        {
            throw new K2Exception($"job control at {address} is unreachable ({e.StatusCode}: {e.Status.Detail}): " +
                "the job may have exited or been killed (a stale control.json stays behind after kill -9)", e);
        }
        catch (RpcException e)
        {
            throw new K2Exception($"job control at {address}: {e.StatusCode}: {e.Status.Detail}", e);
        }
    }

    /// <summary>A status as one JSON object (the last metrics line inlined as an object).</summary>
    public static JsonObject ToJson(JobStatus s, string action, Uri address)
    {
        var workers = new JsonArray();
        foreach (var w in s.Workers)
        {
            workers.Add(new JsonObject
            {
                ["id"] = w.Id,
                ["address"] = w.Address,
                ["weight_version"] = w.WeightVersion,
                ["heartbeat_age_s"] = Math.Round(w.HeartbeatAgeSeconds, 3),
                ["healthy"] = w.Healthy,
            });
        }

        var queues = new JsonObject();
        foreach (var (name, depth) in s.QueueDepths.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            queues[name] = depth;
        }

        return new JsonObject
        {
            ["action"] = action,
            ["address"] = address.GetLeftPart(UriPartial.Authority),
            ["pid"] = s.Pid,
            ["state"] = StateName(s.State),
            ["parked"] = s.Parked,
            ["iteration"] = s.Iteration,
            ["total_iterations"] = s.TotalIterations,
            ["version"] = s.Version,
            ["workers"] = workers,
            ["queue_depths"] = queues,
            ["last_checkpoint"] = s.LastCheckpoint.Length > 0 ? s.LastCheckpoint : null,
            ["last_metrics"] = s.LastMetrics.Length > 0 ? JsonNode.Parse(s.LastMetrics) : null,
        };
    }

    /// <summary>"running", "paused", "draining" or "stopping".</summary>
    public static string StateName(JobState state) => state switch
    {
        JobState.Running => "running",
        JobState.Paused => "paused",
        JobState.Draining => "draining",
        JobState.Stopping => "stopping",
        _ => "unknown",
    };
}
