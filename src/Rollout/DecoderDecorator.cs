namespace K2RL.Rollout;

/// <summary>
/// An <see cref="IDecoder"/> that hands every call to an inner one; a subclass overrides the calls it wraps (timing,
/// logit biases in tests) and inherits the rest.
/// </summary>
public abstract class DecoderDecorator(IDecoder inner) : IDecoder
{
    protected IDecoder Inner { get; } = inner;

    public int VocabSize => Inner.VocabSize;

    public int MaxContext => Inner.MaxContext;

    public int MaxBatch => Inner.MaxBatch;

    public int BlockTokens => Inner.BlockTokens;

    public int TotalBlocks => Inner.TotalBlocks;

    public int FreeBlocks => Inner.FreeBlocks;

    public long BytesPerToken => Inner.BytesPerToken;

    public long ParameterCount => Inner.ParameterCount;

    public IDecoderSequence NewSequence() => Inner.NewSequence();

    public bool TryAllocateBlock(out int block) => Inner.TryAllocateBlock(out block);

    public void FreeBlock(int block) => Inner.FreeBlock(block);

    public void LoadWeights(float[] parameters) => Inner.LoadWeights(parameters);

    public bool TryShareWeights(float[] parameters) => Inner.TryShareWeights(parameters);

    public virtual void Prefill(IDecoderSequence seq, ReadOnlySpan<int> tokens, Span<float> lastLogits) => Inner.Prefill(seq, tokens, lastLogits);

    public virtual void PrefillBatch(IReadOnlyList<IDecoderSequence> seqs, ReadOnlySpan<int> tokens, ReadOnlySpan<int> counts, Span<float> lastLogits) =>
        Inner.PrefillBatch(seqs, tokens, counts, lastLogits);

    public virtual void DecodeStep(IReadOnlyList<IDecoderSequence> seqs, ReadOnlySpan<int> tokens, Span<float> logits) =>
        Inner.DecodeStep(seqs, tokens, logits);
}
