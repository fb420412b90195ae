using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace K2RL.Model.Tokenization;

public sealed partial class BpeTokenizer
{
    /// <summary>
    /// Trains byte-level BPE on <paramref name="corpus"/> (documents of plain text: special tokens in it are
    /// ordinary text) up to <paramref name="vocabSize"/> ids in all, specials included. Ranks 0..255 are the
    /// bytes; each further rank merges the most frequent adjacent pair (ties: the smaller left id, then the
    /// smaller right id), so the result depends only on the corpus and the arguments. Pair counts are kept
    /// incrementally: a merge touches only the distinct pieces that contain the pair. Stops early, with fewer
    /// ranks, when no pair is left.
    /// </summary>
    /// <param name="specialTokens">Specials appended after the ranks; default <see cref="SpecialTokens.All"/>.</param>
    /// <param name="pattern">Pre-tokenization regex; default <see cref="PreTokenizer.DefaultPattern"/>.</param>
    /// <param name="log">Progress lines, if wanted.</param>
    public static BpeTokenizer Train(
        IEnumerable<string> corpus,
        int vocabSize,
        IReadOnlyList<string>? specialTokens = null,
        string? pattern = null,
        Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        specialTokens ??= SpecialTokens.All;
        pattern ??= PreTokenizer.DefaultPattern;
        if (vocabSize < 256 + specialTokens.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize,
                $"the vocabulary needs at least 256 byte tokens + {specialTokens.Count} specials = {256 + specialTokens.Count}");
        }

        if (specialTokens.Distinct(StringComparer.Ordinal).Count() != specialTokens.Count || specialTokens.Any(string.IsNullOrEmpty))
        {
            throw new ArgumentException("special tokens must be distinct and non-empty", nameof(specialTokens));
        }

        var clock = Stopwatch.StartNew();
        var pieces = CountPieces(corpus, PreTokenizer.Compile(pattern), out long totalBytes);
        log?.Invoke($"pre-tokenized {totalBytes:N0} bytes into {pieces.Count:N0} distinct pieces in {clock.Elapsed.TotalSeconds:F2} s");
        var ranks = BpeTrainer.Merge(pieces, vocabSize - specialTokens.Count, log);
        log?.Invoke($"{ranks.Length - 256:N0} merges, {ranks.Length:N0} ranks in {clock.Elapsed.TotalSeconds:F2} s");
        return new BpeTokenizer(ranks, specialTokens.Select((t, i) => KeyValuePair.Create(t, ranks.Length + i)), pattern);
    }

    private static List<(byte[] Bytes, long Count)> CountPieces(IEnumerable<string> corpus, System.Text.RegularExpressions.Regex split, out long totalBytes)
    {
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var lookup = counts.GetAlternateLookup<ReadOnlySpan<char>>();
        foreach (var document in corpus)
        {
            var pieces = new PieceEnumerator(split, document);
            while (pieces.MoveNext())
            {
                CollectionsMarshal.GetValueRefOrAddDefault(lookup, document.AsSpan(pieces.Start, pieces.Length), out _)++;
            }
        }

        totalBytes = 0;
        var result = new List<(byte[], long)>(counts.Count);
        foreach (var (piece, count) in counts.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            var bytes = Encoding.UTF8.GetBytes(piece);
            totalBytes += bytes.Length * count;
            result.Add((bytes, count));
        }

        return result;
    }
}

/// <summary>The merge loop of BPE training over distinct pieces with their counts.</summary>
internal static class BpeTrainer
{
    /// <summary>Returns token bytes by rank: the 256 bytes, then one per merge, up to <paramref name="rankCount"/>.</summary>
    public static byte[][] Merge(List<(byte[] Bytes, long Count)> pieces, int rankCount, Action<string>? log)
    {
        var ranks = new List<byte[]>(rankCount);
        var rankOf = new Dictionary<byte[], int>(ByteArrayComparer.Instance);
        for (int b = 0; b < 256; b++)
        {
            ranks.Add([(byte)b]);
            rankOf[ranks[b]] = b;
        }

        // words[w]: the piece as token ids; counts[w]: how often it occurs.
        var words = new int[pieces.Count][];
        var counts = new long[pieces.Count];
        var pairCount = new Dictionary<long, long>(PairKeyComparer.Instance);
        var where = new Dictionary<long, HashSet<int>>(PairKeyComparer.Instance); // pair -> words that contained it (may be stale)
        for (int w = 0; w < pieces.Count; w++)
        {
            words[w] = Array.ConvertAll(pieces[w].Bytes, b => (int)b);
            counts[w] = pieces[w].Count;
            AddPairs(words[w], counts[w], w, pairCount, where, changed: null);
        }

        // Max count first, then the smaller pair key (left id, then right id). Entries go stale; checked on pop.
        var heap = new PriorityQueue<long, (long NegCount, long Pair)>();
        foreach (var (pair, count) in pairCount)
        {
            heap.Enqueue(pair, (-count, pair));
        }

        var changed = new HashSet<long>(PairKeyComparer.Instance);
        int logEvery = Math.Max(1, (rankCount - 256) / 10);
        while (ranks.Count < rankCount && heap.TryDequeue(out long best, out var priority))
        {
            if (!pairCount.TryGetValue(best, out long count) || count != -priority.NegCount)
            {
                continue;
            }

            int left = (int)(best >> 32), right = (int)best;
            byte[] merged = [.. ranks[left], .. ranks[right]];
            if (!rankOf.TryGetValue(merged, out int id))
            {
                // A byte string reached by two different pairs keeps its first rank and takes no new one.
                id = ranks.Count;
                ranks.Add(merged);
                rankOf[merged] = id;
            }

            changed.Clear();
            where.Remove(best, out var containing);
            foreach (int w in containing!)
            {
                var word = words[w];
                if (!Contains(word, left, right))
                {
                    continue;
                }

                RemovePairs(word, counts[w], pairCount, changed);
                words[w] = MergeWord(word, left, right, id);
                AddPairs(words[w], counts[w], w, pairCount, where, changed);
            }

            foreach (long pair in changed)
            {
                if (pairCount.TryGetValue(pair, out long c) && c > 0)
                {
                    heap.Enqueue(pair, (-c, pair));
                }
                else
                {
                    pairCount.Remove(pair);
                }
            }

            if ((ranks.Count - 256) % logEvery == 0)
            {
                log?.Invoke($"rank {ranks.Count:N0}/{rankCount:N0}: merged a pair seen {count:N0} times");
            }
        }

        if (ranks.Count < rankCount)
        {
            log?.Invoke($"no pairs left: stopped at {ranks.Count:N0} ranks of the {rankCount:N0} asked for");
        }

        return [.. ranks];
    }

    private static bool Contains(int[] word, int left, int right)
    {
        for (int i = 0; i + 1 < word.Length; i++)
        {
            if (word[i] == left && word[i + 1] == right)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Replaces each occurrence of (left, right), left to right without overlap, by <paramref name="id"/>.</summary>
    private static int[] MergeWord(int[] word, int left, int right, int id)
    {
        var result = new List<int>(word.Length);
        for (int i = 0; i < word.Length; i++)
        {
            if (i + 1 < word.Length && word[i] == left && word[i + 1] == right)
            {
                result.Add(id);
                i++;
            }
            else
            {
                result.Add(word[i]);
            }
        }

        return [.. result];
    }

    private static void AddPairs(int[] word, long count, int w, Dictionary<long, long> pairCount, Dictionary<long, HashSet<int>> where, HashSet<long>? changed)
    {
        for (int i = 0; i + 1 < word.Length; i++)
        {
            long pair = BpeTokenizer.PairKey(word[i], word[i + 1]);
            CollectionsMarshal.GetValueRefOrAddDefault(pairCount, pair, out _) += count;
            ref var set = ref CollectionsMarshal.GetValueRefOrAddDefault(where, pair, out _);
            (set ??= []).Add(w);
            changed?.Add(pair);
        }
    }

    private static void RemovePairs(int[] word, long count, Dictionary<long, long> pairCount, HashSet<long> changed)
    {
        for (int i = 0; i + 1 < word.Length; i++)
        {
            long pair = BpeTokenizer.PairKey(word[i], word[i + 1]);
            CollectionsMarshal.GetValueRefOrNullRef(pairCount, pair) -= count;
            changed.Add(pair);
        }
    }
}
