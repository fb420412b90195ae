using System.CommandLine;
using System.Text.Json.Nodes;
using K2RL.Common.Rpc;
using K2RL.Protos.V1;
using K2RL.Trainer.Rl;

namespace K2RL.Cli.Commands;

/// <summary>
/// <c>k2rl job status|pause|drain|resume|stop --run-dir DIR [--json] [--token-file PATH] [--address URL]</c>: job control
/// of a running <c>k2rl rl</c> (found through RUN_DIR/control.json, or at --address). docs/OPERATIONS.md.
/// </summary>
public sealed class JobCommands : ICommandProvider
{
    public string Group => "job";

    internal sealed record JobOptions(string Action, string RunDir, bool Json, string? TokenFile, string? Address, double WaitSeconds = 0);

    /// <summary>What --wait waits for, per action (status and resume return at once).</summary>
    private static readonly Dictionary<string, string> WaitsFor = new()
    {
        ["pause"] = "the iteration in flight has finished (parked)",
        ["drain"] = "the checkpoint is written and the job is parked",
        ["stop"] = "the job has written its checkpoint and exited",
    };

    private static readonly Dictionary<string, string> Descriptions = new()
    {
        ["status"] = "Iteration, weight version, state, workers, queue depths and the last metrics of a running RL job",
        ["pause"] = "Start no new iteration after the one in flight (until resume or stop)",
        ["drain"] = "Finish the iteration in flight, write a checkpoint, then stay paused",
        ["resume"] = "Go on after pause or drain",
        ["stop"] = "Write a checkpoint and exit (as SIGTERM does); k2rl rl --resume continues exactly",
    };

    public IEnumerable<Command> Build(CliContext context)
    {
        foreach (string action in JobControlClient.Actions)
        {
            var runDir = new Option<string>("--run-dir") { Description = "The RL job's run directory (its control.json says where job control listens)", Required = true };
            var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout" };
            var tokenFile = new Option<string?>("--token-file") { Description = $"The job-control token (first line); else ${BearerToken.EnvironmentVariable}" };
            var address = new Option<string?>("--address") { Description = "Call job control at this URL (http://HOST:PORT) instead of the one in control.json" };
            var command = new Command(action, Descriptions[action]) { runDir, json, tokenFile, address };
            Option<double>? wait = null;
            if (WaitsFor.TryGetValue(action, out string? until))
            {
                wait = new Option<double>("--wait") { Description = $"Return once {until}, waiting at most this many seconds (0: return at once)", DefaultValueFactory = _ => 0 };
                command.Options.Add(wait);
            }

            command.SetAction(parse => Run(context, new JobOptions(action, parse.GetValue(runDir)!, parse.GetValue(json), parse.GetValue(tokenFile),
                parse.GetValue(address), wait is null ? 0 : parse.GetValue(wait))));
            yield return command;
        }
    }

    internal static int Run(CliContext context, JobOptions o)
    {
        if (o.WaitSeconds < 0 || o.WaitSeconds > 86_400)
        {
            throw new K2RL.Common.ConfigException($"--wait must be in [0, 86400] seconds (got {o.WaitSeconds})");
        }

        var token = BearerToken.Load(o.TokenFile, "--token-file");
        Uri address;
        if (o.Address is not null)
        {
            address = Uri.TryCreate(o.Address, UriKind.Absolute, out var u) && u.Scheme == Uri.UriSchemeHttp
                ? u
                : throw new K2RL.Common.ConfigException($"--address '{o.Address}' is not an http://HOST:PORT URL");
        }
        else
        {
            var info = JobControlClient.ReadControlFile(o.RunDir);
            address = info.Address;
            if (info.TokenRequired && token is null)
            {
                context.Warn($"the job at {address} requires a token and none was given (--token-file PATH or {BearerToken.EnvironmentVariable})");
            }
        }

        var status = JobControlClient.CallAsync(address, o.Action, token, TimeSpan.FromSeconds(10)).GetAwaiter().GetResult();
        if (o.WaitSeconds > 0)
        {
            status = Wait(context, o, address, token, status);
        }

        var json = JobControlClient.ToJson(status, o.Action, address);
        if (o.WaitSeconds > 0 && o.Action == "stop")
        {
            json["exited"] = true;
        }

        if (o.Json)
        {
            context.Out.WriteLine(json.ToJsonString());
        }
        else
        {
            WriteText(context.Out, status, json);
        }

        return 0;
    }

    /// <summary>Polls status until the action has taken effect (<see cref="WaitsFor"/>); the last status seen.</summary>
    private static JobStatus Wait(CliContext context, JobOptions o, Uri address, BearerToken? token, JobStatus status)
    {
        var deadline = DateTime.UtcNow.AddSeconds(o.WaitSeconds);
        string controlFile = Path.Combine(o.RunDir, "control.json");
        string? said = null;
        while (true)
        {
            if (o.Action == "stop" ? o.Address is null && !File.Exists(controlFile)   // the job removes it as it exits
                : status.Parked && status.State == JobState.Paused)
            {
                return status;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new K2RL.Common.K2Exception($"job {o.Action}: the job at {address} did not reach the point where {WaitsFor[o.Action]} within " +
                                                  $"{o.WaitSeconds} s (state {JobControlClient.StateName(status.State)}, iteration {status.Iteration})");
            }

            Thread.Sleep(200);
            try
            {
                status = JobControlClient.CallAsync(address, "status", token, TimeSpan.FromSeconds(10)).GetAwaiter().GetResult();
            }
            catch (K2RL.Common.K2Exception) when (o.Action == "stop")
            {
                return status;   // unreachable: the process is gone
            }

            if (o.Action != "stop" && status.State is not (JobState.Paused or JobState.Draining))
            {
                throw new K2RL.Common.K2Exception($"job {o.Action}: the job at {address} went on to {JobControlClient.StateName(status.State)} while waiting (resumed by someone else?)");
            }

            string line = $"job {o.Action}: waiting until {WaitsFor[o.Action]} (state {JobControlClient.StateName(status.State)}, iteration {status.Iteration})";
            if (line != said)
            {
                context.Error.WriteLine(line);
                said = line;
            }
        }
    }

    private static void WriteText(TextWriter o, JobStatus s, JsonObject json)
    {
        string parked = s.State is not (JobState.Paused or JobState.Draining) ? ""
            : s.Parked ? " (parked between iterations)" : " (finishing the iteration in flight)";
        o.WriteLine($"job       pid {s.Pid} at {json["address"]}");
        o.WriteLine($"state     {JobControlClient.StateName(s.State)}{parked}");
        o.WriteLine($"iteration {s.Iteration}/{s.TotalIterations}");
        o.WriteLine($"version   {s.Version}");
        o.WriteLine($"checkpoint {(s.LastCheckpoint.Length > 0 ? s.LastCheckpoint : "-")}");
        o.WriteLine(s.Workers.Count == 0 ? "workers   none (embedded generation)" : $"workers   {s.Workers.Count}");
        foreach (var w in s.Workers)
        {
            o.WriteLine($"  {w.Id,-24} {(w.Healthy ? "healthy" : "UNHEALTHY"),-9} version {w.WeightVersion,-6} heartbeat {w.HeartbeatAgeSeconds:F1} s ago  {w.Address}");
        }

        o.WriteLine(s.QueueDepths.Count == 0 ? "queues    none" : "queues    " + string.Join("  ", s.QueueDepths.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}")));
        o.WriteLine($"last      {(s.LastMetrics.Length > 0 ? s.LastMetrics : "-")}");
    }
}
