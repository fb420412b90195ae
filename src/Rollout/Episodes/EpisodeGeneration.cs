namespace K2RL.Rollout.Episodes;

/// <summary>The policy's weights at a version: what generation that needs this version must run with.</summary>
public sealed record PolicyWeights(long Version, float[] Parameters);

/// <summary>
/// Where an RL iteration's episodes are generated: in-process (<see cref="EmbeddedGeneration"/>, the default) or by
/// rollout workers through Redis (<see cref="Workers.RedisEpisodeGeneration"/>). Same contract as
/// <see cref="EpisodeRunner.RunAsync"/>: finished and paused episodes in input order (fresh first).
/// </summary>
public interface IEpisodeGeneration
{
    /// <param name="weights">the version the episodes are generated at (a remote backend ships it before the work).</param>
    Task<EpisodeBatch> RunAsync(IReadOnlyList<EpisodeRequest> fresh, IReadOnlyList<PausedEpisode> resumed, float temperature, long tokenBudget,
        PolicyWeights weights, CancellationToken ct);
}

/// <summary>The co-located default: the job's own <see cref="EpisodeRunner"/>, whose engine already holds the weights.</summary>
public sealed class EmbeddedGeneration(EpisodeRunner runner) : IEpisodeGeneration
{
    public Task<EpisodeBatch> RunAsync(IReadOnlyList<EpisodeRequest> fresh, IReadOnlyList<PausedEpisode> resumed, float temperature, long tokenBudget,
        PolicyWeights weights, CancellationToken ct) => runner.RunAsync(fresh, resumed, temperature, tokenBudget, ct);
}
