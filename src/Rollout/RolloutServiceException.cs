using K2RL.Common;

namespace K2RL.Rollout;

/// <summary>The gRPC status a rollout call ends with (numbers as in grpc/status.h).</summary>
public enum RolloutStatus
{
    Cancelled = 1,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Internal = 13,
    Unavailable = 14,
}

/// <summary>A rollout call refused or failed; the transport answers with <see cref="Status"/>.</summary>
public sealed class RolloutServiceException(RolloutStatus status, string message) : K2Exception(message)
{
    public RolloutStatus Status { get; } = status;
}
