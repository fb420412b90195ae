namespace K2RL.CheckpointEngine.Planning;

/// <summary>How the inference engine shards a tensor across the ranks of one replica (tensor parallel size tp).</summary>
public enum ShardRule
{
    /// <summary>Every rank holds the whole tensor (norms, the router, low-rank down-projections).</summary>
    Replicated,

    /// <summary>Each rank holds 1/tp of it (column- or row-parallel linears, vocab-parallel embeddings).</summary>
    Split,

    /// <summary>A routed expert's tensor: split 1/tp under tensor parallelism, whole on one rank under expert parallelism.</summary>
    Expert,
}

/// <summary>
/// One tensor the checkpoint engine ships: what the planner knows of a model. The caller (the CLI, from the model's
/// layout) decides the dtype of the shipped bytes and the shard rule; the planner never sees the model itself.
/// </summary>
/// <param name="Name">e.g. "model.layers.3.mlp.experts.7.up_proj.weight".</param>
/// <param name="Bytes">bytes on the wire (elements × bytes per element of the shipped dtype).</param>
/// <param name="Rule">how one inference replica shards it.</param>
/// <param name="ExpertIndex">the routed expert (for <see cref="ShardRule.Expert"/>), else -1.</param>
public sealed record TensorDescriptor(string Name, long Bytes, ShardRule Rule, int ExpertIndex = -1)
{
    /// <summary>Bytes rank <paramref name="rank"/> of a replica of <paramref name="tp"/> ranks copies out of this tensor.</summary>
    public long BytesFor(int rank, int tp, bool expertParallel) => Rule switch
    {
        ShardRule.Replicated => Bytes,
        ShardRule.Expert when expertParallel => ExpertIndex % tp == rank ? Bytes : 0,
        _ => SplitBytes(rank, tp),
    };

    // An even split, the remainder to the first ranks (a shape that does not divide leaves a few bytes over).
    private long SplitBytes(int rank, int tp) => Bytes / tp + (rank < Bytes % tp ? 1 : 0);
}
