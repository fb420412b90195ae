using K2RL.Common;
using Grpc.Core;

namespace K2RL.Rollout;

/// <summary>A rollout call refused or failed; the transport answers with <see cref="Status"/>.</summary>
public sealed class RolloutServiceException(StatusCode status, string message) : K2Exception(message)
{
    public StatusCode Status { get; } = status;
}
