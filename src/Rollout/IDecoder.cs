namespace K2RL.Rollout;

/// <summary>
/// The engine's seam over the model: a paged cache of fixed-size blocks and two forward passes.
/// <see cref="ModelDecoder"/> is the real one (MLA with weight absorption); tests use a deterministic double.
/// The caller owns block accounting: before a pass it makes sure each sequence holds enough blocks for
/// its new length. Letters: B batch, V vocab.
/// </summary>
public interface IDecoder
{
    int VocabSize { get; }

    /// <summary>The longest sequence (prompt + generated) the model accepts.</summary>
    int MaxContext { get; }

    /// <summary>The most sequences one <see cref="DecodeStep"/> takes.</summary>
    int MaxBatch { get; }

    int BlockTokens { get; }

    int TotalBlocks { get; }

    int FreeBlocks { get; }

    /// <summary>Cache bytes per cached token (for budgets given in bytes).</summary>
    long BytesPerToken { get; }

    /// <summary>The length of the flat parameter buffer <see cref="LoadWeights"/> takes.</summary>
    long ParameterCount { get; }

    /// <summary>The tensors of that buffer (names, shapes, offsets): what a checkpoint-engine manifest must match. One flat
    /// tensor "parameters" by default, for decoders without a model layout.</summary>
    IReadOnlyList<K2RL.CheckpointEngine.TensorSpec> WeightTensors => K2RL.CheckpointEngine.TensorSpec.Flat(ParameterCount);

    IDecoderSequence NewSequence();

    /// <summary>
    /// The experts positions [0, <paramref name="length"/>) of the sequence were routed to when this decoder last
    /// computed them ([length, ModelConfig.RoutingStride] ids, −1 where not computed), for routing replay in the
    /// trainer; null when the decoder keeps no routing record (the default).
    /// </summary>
    int[]? RoutingOf(IDecoderSequence seq, int length) => null;

    bool TryAllocateBlock(out int block);

    void FreeBlock(int block);

    /// <summary>Replaces the weights (a layout-sized flat fp32 buffer) by a copy. Called only between steps.</summary>
    void LoadWeights(float[] parameters);

    /// <summary>
    /// Replaces the weights by reading <paramref name="parameters"/> in place (no copy) until the next load or share; the
    /// caller keeps the buffer unchanged that long. False where the decoder cannot (it keeps a transformed copy, or
    /// does not support it: the default), and the caller then copies with <see cref="LoadWeights"/>.
    /// </summary>
    bool TryShareWeights(float[] parameters) => false;

    /// <summary>Appends <paramref name="tokens"/> to the sequence's cache; writes the last position's logits [V].</summary>
    void Prefill(IDecoderSequence seq, ReadOnlySpan<int> tokens, Span<float> lastLogits);

    /// <summary>
    /// Prefills several sequences in one pass: <paramref name="tokens"/> holds counts[0] tokens for seqs[0], then
    /// counts[1] for seqs[1], …; each run is appended to its sequence's cache; writes each sequence's last
    /// position's logits to <paramref name="lastLogits"/> [B, V]. Same logits as one <see cref="Prefill"/> per
    /// sequence. When it throws, the caches of <paramref name="seqs"/> are in an unspecified state.
    /// </summary>
    void PrefillBatch(IReadOnlyList<IDecoderSequence> seqs, ReadOnlySpan<int> tokens, ReadOnlySpan<int> counts, Span<float> lastLogits);

    /// <summary>
    /// Appends one token per sequence; writes logits [B, V], each row computed from its own sequence alone. When it
    /// throws, every sequence is left as it was (no token appended), so the step can be retried.
    /// </summary>
    void DecodeStep(IReadOnlyList<IDecoderSequence> seqs, ReadOnlySpan<int> tokens, Span<float> logits);
}

/// <summary>One sequence's cache: the blocks it holds, in order, and how many positions are filled.</summary>
public interface IDecoderSequence
{
    List<int> Blocks { get; }

    int Length { get; set; }
}
