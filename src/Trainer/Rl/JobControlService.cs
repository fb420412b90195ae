using Grpc.Core;
using K2RL.Common.Rpc;
using K2RL.Protos.V1;
using Serilog;

namespace K2RL.Trainer.Rl;

/// <summary>
/// k2rl.v1.JobControl (protos/k2rl/v1/job.proto) over a <see cref="JobControlState"/>: every call first checks the
/// bearer token (when one is configured; UNAUTHENTICATED otherwise), then acts and answers the job's status.
/// </summary>
public sealed class JobControlService(JobControlState state, IWorkerPoolStatus pool, BearerToken? token, ILogger log) : JobControl.JobControlBase
{
    public override Task<JobStatus> Status(JobControlRequest request, ServerCallContext context) => Answer(context, null, null);

    public override Task<JobStatus> Pause(JobControlRequest request, ServerCallContext context) => Answer(context, "pause", state.Pause);

    public override Task<JobStatus> Drain(JobControlRequest request, ServerCallContext context) => Answer(context, "drain", state.Drain);

    public override Task<JobStatus> Resume(JobControlRequest request, ServerCallContext context) => Answer(context, "resume", state.Resume);

    public override Task<JobStatus> Stop(JobControlRequest request, ServerCallContext context) => Answer(context, "stop", state.Stop);

    private async Task<JobStatus> Answer(ServerCallContext context, string? what, Func<JobControlSnapshot>? act)
    {
        BearerToken.Check(token, context);
        if (what is not null)
        {
            log.Information("job control: {What:l} (from {Peer:l})", what, context.Peer);
            act!();
        }

        var pooled = await pool.SnapshotAsync(context.CancellationToken).ConfigureAwait(false);
        return ToProto(state.Snapshot(), pooled);
    }

    /// <summary>The wire form of a status.</summary>
    public static JobStatus ToProto(JobControlSnapshot s, WorkerPoolSnapshot pool)
    {
        var status = new JobStatus
        {
            Iteration = s.Iteration,
            TotalIterations = s.TotalIterations,
            Version = s.Version,
            State = s.State switch
            {
                JobRunState.Running => JobState.Running,
                JobRunState.Paused => JobState.Paused,
                JobRunState.Draining => JobState.Draining,
                _ => JobState.Stopping,
            },
            Parked = s.Parked,
            LastMetrics = s.LastMetrics ?? "",
            LastCheckpoint = s.LastCheckpoint ?? "",
            Pid = Environment.ProcessId,
        };
        foreach (var w in pool.Workers)
        {
            status.Workers.Add(new WorkerStatus
            {
                Id = w.Id,
                Address = w.Address,
                WeightVersion = w.WeightVersion,
                HeartbeatAgeSeconds = w.HeartbeatAge.TotalSeconds,
                Healthy = w.Healthy,
            });
        }

        foreach (var (name, depth) in pool.QueueDepths)
        {
            status.QueueDepths[name] = depth;
        }

        return status;
    }
}
