using K2RL.Common;
using K2RL.Rollout;

namespace K2RL.Rollout.Tests;

/// <summary>
/// A deterministic stand-in for the model: the next-token logits are a hash of the last two cached tokens,
/// the position and the weights' salt (parameters[0]). It keeps a real block pool and checks the engine's
/// side of the contract: blocks owned, never double-freed, enough of them before every pass.
/// </summary>
internal sealed class HashDecoder : IDecoder
{
    private readonly Stack<int> free = new();
    private readonly HashSet<int> allocated = [];

    public HashDecoder(int vocab = 64, int maxContext = 256, int maxBatch = 8, int blockTokens = 4, int blocks = 256)
    {
        VocabSize = vocab;
        MaxContext = maxContext;
        MaxBatch = maxBatch;
        BlockTokens = blockTokens;
        TotalBlocks = blocks;
        for (int b = blocks - 1; b >= 0; b--)
        {
            free.Push(b);
        }
    }

    public int VocabSize { get; }

    public int MaxContext { get; }

    public int MaxBatch { get; }

    public int BlockTokens { get; }

    public int TotalBlocks { get; }

    public int FreeBlocks => free.Count;

    public long BytesPerToken => 16;

    public long ParameterCount => 1;

    public float Salt { get; private set; }

    public int MaxAllocated { get; private set; }

    public int WeightLoads { get; private set; }

    public List<int> BatchSizes { get; } = [];

    /// <summary>When set, the logits strongly favour (last token + 1) mod Loop: a stuck model.</summary>
    public int Loop { get; set; }

    /// <summary>When set, every decode step first takes a permit: the test decides how far the engine gets.</summary>
    public SemaphoreSlim? StepGate { get; set; }

    public IDecoderSequence NewSequence() => new Seq();

    public bool TryAllocateBlock(out int block)
    {
        if (!free.TryPop(out block))
        {
            return false;
        }

        allocated.Add(block);
        MaxAllocated = Math.Max(MaxAllocated, allocated.Count);
        return true;
    }

    public void FreeBlock(int block)
    {
        if (!allocated.Remove(block))
        {
            throw new InvalidOperationException($"block {block} freed but not allocated");
        }

        free.Push(block);
    }

    public void LoadWeights(float[] parameters)
    {
        Salt = parameters[0];
        WeightLoads++;
    }

    /// <summary>When set (>= 0), a prefill whose tokens include it fails: a request the model cannot take.</summary>
    public int PoisonToken { get; set; } = -1;

    public void Prefill(IDecoderSequence seq, ReadOnlySpan<int> tokens, Span<float> lastLogits)
    {
        if (tokens.Contains(PoisonToken))
        {
            throw new InvalidOperationException($"poison token {PoisonToken}");
        }

        var s = (Seq)seq;
        foreach (int t in tokens)
        {
            Append(s, t);
        }

        Logits(s, lastLogits);
    }

    public List<int> PrefillBatchSizes { get; } = [];

    public void PrefillBatch(IReadOnlyList<IDecoderSequence> seqs, ReadOnlySpan<int> tokens, ReadOnlySpan<int> counts, Span<float> lastLogits)
    {
        if (counts.Length != seqs.Count)
        {
            throw new InvalidOperationException($"{seqs.Count} sequences but {counts.Length} counts");
        }

        PrefillBatchSizes.Add(seqs.Count);
        for (int b = 0, at = 0; b < seqs.Count; at += counts[b], b++)
        {
            Prefill(seqs[b], tokens.Slice(at, counts[b]), lastLogits.Slice(b * VocabSize, VocabSize));
        }
    }

    /// <summary>When set (>= 0), a decode step that includes a sequence holding this token fails, appending nothing.</summary>
    public int DecodePoisonToken { get; set; } = -1;

    public void DecodeStep(IReadOnlyList<IDecoderSequence> seqs, ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (seqs.Count > MaxBatch)
        {
            throw new InvalidOperationException($"batch {seqs.Count} > {MaxBatch}");
        }

        if (seqs.Any(s => ((Seq)s).History.Contains(DecodePoisonToken)))
        {
            throw new InvalidOperationException($"decode poison token {DecodePoisonToken}");
        }

        StepGate?.Wait();
        for (int b = 0; b < seqs.Count; b++)
        {
            Check((Seq)seqs[b], tokens[b]);   // every check before any append: a step that throws changes nothing
        }

        BatchSizes.Add(seqs.Count);
        for (int b = 0; b < seqs.Count; b++)
        {
            var s = (Seq)seqs[b];
            Append(s, tokens[b]);
            Logits(s, logits.Slice(b * VocabSize, VocabSize));
        }
    }

    private void Append(Seq s, int token)
    {
        Check(s, token);
        s.History.Add(token);
        s.Length++;
    }

    private void Check(Seq s, int token)
    {
        if ((uint)token >= (uint)VocabSize)
        {
            throw new InvalidOperationException($"token {token} out of range");
        }

        if (s.Length + 1 > s.Blocks.Count * BlockTokens)
        {
            throw new InvalidOperationException($"sequence at {s.Length} holds only {s.Blocks.Count} blocks");
        }

        foreach (int b in s.Blocks)
        {
            if (!allocated.Contains(b))
            {
                throw new InvalidOperationException($"sequence uses block {b} it does not own");
            }
        }
    }

    private void Logits(Seq s, Span<float> row)
    {
        int a = s.History[^1], b = s.History.Count > 1 ? s.History[^2] : -1;
        ulong key = Hash((ulong)(uint)a * 1_000_003UL ^ (ulong)(uint)b * 7919UL ^ (ulong)s.Length << 40 ^ (ulong)BitConverter.SingleToInt32Bits(Salt));
        for (int v = 0; v < VocabSize; v++)
        {
            ulong h = Hash(key ^ (ulong)v * SplitMix64.Golden);
            row[v] = (float)((h >> 40) / (double)(1UL << 24) * 6.0 - 3.0);
        }

        if (Loop > 0)
        {
            row[(a + 1) % Loop] += 20f;
        }
    }

    private static ulong Hash(ulong z) => SplitMix64.Mix(z + SplitMix64.Golden);

    private sealed class Seq : IDecoderSequence
    {
        public List<int> Blocks { get; } = [];

        public List<int> History { get; } = [];

        private int length;

        public int Length
        {
            get => length;
            set
            {
                length = value;
                if (value == 0)
                {
                    History.Clear();
                }
            }
        }
    }
}
