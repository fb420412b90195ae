using K2RL.Model;
using K2RL.Model.Inference;

namespace K2RL.Rollout;

/// <summary>
/// The real decoder: K2RL's <see cref="DecodeModel"/> (plain-path prefill, weight-absorbed decode) over a
/// <see cref="KvBlockPool"/> of compressed MLA cache blocks (latent + roped k_pe per token and layer).
/// </summary>
public sealed class ModelDecoder : IDecoder
{
    private readonly KvBlockPool pool;
    private readonly DecodeModel model;
    private readonly List<SequenceCache> stepCaches = [];
    private readonly int routingStride;

    /// <param name="numBlocks">the cache pool; by default room for <paramref name="maxBatch"/> sequences of the full context.</param>
    /// <param name="precision">the values the weights are held at (<see cref="DecodeModel"/>); arithmetic is fp32 either way.</param>
    /// <param name="recordRouting">keep each sequence's routing record (<see cref="RoutingOf"/>) for routing replay; a model without MoE layers has none.</param>
    public ModelDecoder(ModelConfig config, int maxBatch, int blockTokens = 16, int? numBlocks = null,
        WeightPrecision precision = WeightPrecision.F32, bool recordRouting = false)
    {
        Config = config;
        routingStride = recordRouting ? config.RoutingStride : 0;
        int perSequence = (config.MaxPositionEmbeddings + blockTokens - 1) / blockTokens;
        pool = new KvBlockPool(config, blockTokens, numBlocks ?? maxBatch * perSequence);
        model = new DecodeModel(config, pool, maxBatch, precision);
        var layout = new ParameterLayout(config);
        ParameterCount = layout.TotalLength;
        WeightTensors = layout.ToTensorSpecs();
    }

    public IReadOnlyList<K2RL.CheckpointEngine.TensorSpec> WeightTensors { get; }

    public ModelConfig Config { get; }

    /// <summary>The model's time per phase of prefill and decode, accumulated until reset.</summary>
    public StepProfile Profile => model.Profile;

    public int VocabSize => Config.VocabSize;

    public int MaxContext => Config.MaxPositionEmbeddings;

    public int MaxBatch => model.MaxBatch;

    public WeightPrecision Precision => model.Precision;

    public int BlockTokens => pool.BlockTokens;

    public int TotalBlocks => pool.NumBlocks;

    public int FreeBlocks => pool.FreeBlocks;

    public long BytesPerToken => pool.BytesPerToken;

    public long ParameterCount { get; }

    public IDecoderSequence NewSequence()
    {
        var seq = new Sequence();
        if (routingStride > 0)
        {
            seq.Cache.Routing = new RoutingLog(routingStride);
        }

        return seq;
    }

    public int[]? RoutingOf(IDecoderSequence seq, int length) => ((Sequence)seq).Cache.Routing?.Copy(length);

    public bool TryAllocateBlock(out int block) => pool.TryAllocate(out block);

    public void FreeBlock(int block) => pool.Free(block);

    public void LoadWeights(float[] parameters) => model.LoadWeights(parameters);

    public bool TryShareWeights(float[] parameters) => model.TryShareWeights(parameters);

    public void Prefill(IDecoderSequence seq, ReadOnlySpan<int> tokens, Span<float> lastLogits) =>
        model.Prefill(((Sequence)seq).Cache, tokens, lastLogits);

    public void PrefillBatch(IReadOnlyList<IDecoderSequence> seqs, ReadOnlySpan<int> tokens, ReadOnlySpan<int> counts, Span<float> lastLogits) =>
        model.PrefillBatch(Caches(seqs), tokens, counts, lastLogits);

    public void DecodeStep(IReadOnlyList<IDecoderSequence> seqs, ReadOnlySpan<int> tokens, Span<float> logits) =>
        model.DecodeStep(Caches(seqs), tokens, logits);

    private List<SequenceCache> Caches(IReadOnlyList<IDecoderSequence> seqs)
    {
        stepCaches.Clear();
        foreach (var s in seqs)
        {
            stepCaches.Add(((Sequence)s).Cache);
        }

        return stepCaches;
    }

    private sealed class Sequence : IDecoderSequence
    {
        public SequenceCache Cache { get; } = new();

        public List<int> Blocks => Cache.Blocks;

        public int Length
        {
            get => Cache.Length;
            set => Cache.Length = value;
        }
    }
}
