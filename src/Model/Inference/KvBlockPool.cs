using K2RL.Model.Layers;

namespace K2RL.Model.Inference;

/// <summary>
/// The compressed MLA cache (SPEC §1 item 6) as a pool of fixed-size blocks. Per block and layer it holds
/// [BlockTokens, R + Dr] floats: for each cached token the latent c after kv_a_layernorm (R values) followed by
/// k_pe after RoPE (Dr values). Nothing per head is cached. Blocks are handed out lowest index first and
/// returned with <see cref="Free"/>; the pool never grows.
/// Letters: L layers, R kv_lora_rank, Dr qk_rope_head_dim.
/// </summary>
public sealed class KvBlockPool
{
    private readonly float[][] blocks;     // [NumBlocks][L, BlockTokens, R + Dr]
    private readonly int[] freeStack;      // free block ids; top = next handed out
    private readonly bool[] isFree;        // [NumBlocks]
    private int freeCount;

    public KvBlockPool(ModelConfig config, int blockTokens, int numBlocks)
    {
        if (blockTokens <= 0)
        {
            throw new ArgumentException($"blockTokens must be > 0, got {blockTokens}", nameof(blockTokens));
        }

        if (numBlocks < 0)
        {
            throw new ArgumentException($"numBlocks must be >= 0, got {numBlocks}", nameof(numBlocks));
        }

        Config = config;
        BlockTokens = blockTokens;
        NumBlocks = numBlocks;
        Mla = config.Mla;
        RowFloats = Mla.RD;
        long perBlock = (long)config.NumHiddenLayers * blockTokens * RowFloats;
        if (perBlock > Array.MaxLength)
        {
            throw new ArgumentException($"a block of {blockTokens} tokens needs {perBlock} floats, more than one array holds", nameof(blockTokens));
        }

        blocks = new float[numBlocks][];
        freeStack = new int[numBlocks];
        isFree = new bool[numBlocks];
        for (int i = 0; i < numBlocks; i++)
        {
            blocks[i] = new float[perBlock];
            freeStack[i] = numBlocks - 1 - i;
            isFree[i] = true;
        }

        freeCount = numBlocks;
    }

    public ModelConfig Config { get; }

    /// <summary>The MLA shapes of the model whose cache this is.</summary>
    public MlaDims Mla { get; }

    public int BlockTokens { get; }

    public int NumBlocks { get; }

    public int FreeBlocks => freeCount;

    /// <summary>Floats per cached token per layer: R + Dr.</summary>
    public int RowFloats { get; }

    /// <summary>Cache bytes per token: L × (R + Dr) × 4.</summary>
    public long BytesPerToken => (long)Config.NumHiddenLayers * RowFloats * sizeof(float);

    public bool TryAllocate(out int block)
    {
        if (freeCount == 0)
        {
            block = -1;
            return false;
        }

        block = freeStack[--freeCount];
        isFree[block] = false;
        return true;
    }

    public void Free(int block)
    {
        if ((uint)block >= (uint)NumBlocks)
        {
            throw new ArgumentOutOfRangeException(nameof(block), $"block {block} is not in [0, {NumBlocks})");
        }

        if (isFree[block])
        {
            throw new InvalidOperationException($"block {block} is already free");
        }

        isFree[block] = true;
        freeStack[freeCount++] = block;
    }

    /// <summary>The [BlockTokens, R + Dr] rows of one layer in one block.</summary>
    public Span<float> LayerRows(int block, int layer) =>
        blocks[block].AsSpan(layer * BlockTokens * RowFloats, BlockTokens * RowFloats);
}

/// <summary>One sequence's place in the cache: its blocks in order and how many tokens are cached.</summary>
public sealed class SequenceCache
{
    public List<int> Blocks { get; } = [];

    /// <summary>Tokens cached (the next token's position).</summary>
    public int Length { get; set; }

    /// <summary>Tokens the blocks can hold.</summary>
    public int Capacity(KvBlockPool pool) => Blocks.Count * pool.BlockTokens;

    /// <summary>
    /// When set, <see cref="DecodeModel"/> writes the experts each position was routed to here whenever it computes
    /// that position (routing replay); a position computed again (a re-prefill under new weights) is overwritten.
    /// </summary>
    public RoutingLog? Routing { get; set; }
}

/// <summary>
/// A growable routing record: per position, <see cref="Stride"/> expert ids (<see cref="ModelConfig.RoutingStride"/>:
/// K per MoE layer, in layer order, best first). Positions never written read −1.
/// </summary>
public sealed class RoutingLog(int stride)
{
    private int[] ids = [];

    public int Stride { get; } = stride > 0 ? stride : throw new ArgumentOutOfRangeException(nameof(stride), stride, "a routing log needs a positive stride (a model with MoE layers)");

    /// <summary>Positions written so far (one past the highest).</summary>
    public int Positions { get; private set; }

    /// <summary>The ids of one position, growing the log as needed.</summary>
    public Span<int> At(int position)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        int need = (position + 1) * Stride;
        if (ids.Length < need)
        {
            int old = ids.Length;
            Array.Resize(ref ids, Math.Max(need, 2 * ids.Length));
            ids.AsSpan(old).Fill(-1);
        }

        Positions = Math.Max(Positions, position + 1);
        return ids.AsSpan(position * Stride, Stride);
    }

    /// <summary>A copy of the first <paramref name="positions"/> positions' ids ([positions, Stride]; −1 where never written).</summary>
    public int[] Copy(int positions)
    {
        var copy = new int[positions * Stride];
        copy.AsSpan().Fill(-1);
        ids.AsSpan(0, Math.Min(ids.Length, copy.Length)).CopyTo(copy);
        return copy;
    }

    /// <summary>Forgets every position (the sequence's cache was emptied).</summary>
    public void Clear()
    {
        ids.AsSpan().Fill(-1);
        Positions = 0;
    }
}
