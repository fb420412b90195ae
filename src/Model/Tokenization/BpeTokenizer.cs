using System.Buffers;
using System.Text;
using System.Text.RegularExpressions;
using System.Text.Unicode;

namespace K2RL.Model.Tokenization;

/// <summary>
/// Byte-level BPE in the tiktoken style: ids 0..RankCount-1 are the ranks (token bytes, every single byte
/// among them), special tokens come after. A piece of text is encoded by starting from its bytes and
/// repeatedly merging the adjacent pair whose concatenation has the lowest rank (leftmost on ties), as
/// tiktoken does, so a rank file made elsewhere encodes the same way here. Immutable and thread-safe.
/// Split by concern: encoding and decoding here, training in BpeTokenizer.Train.cs, files in
/// BpeTokenizer.Storage.cs.
/// </summary>
public sealed partial class BpeTokenizer
{
    /// <summary>Pieces of at most this many bytes merge by scanning; longer ones use a heap (same result).</summary>
    internal const int ScanMergeLimit = 64;

    private readonly byte[][] ranks;                                   // [RankCount] token bytes by rank
    private readonly Dictionary<byte[], int>.AlternateLookup<ReadOnlySpan<byte>> rankOf;
    private readonly int[] byteRank = new int[256];                    // single byte -> its rank
    private readonly Dictionary<long, int> mergeRank;                  // (left id, right id) -> rank of the concatenation
    private readonly byte[]?[] tokenBytes;                             // [VocabSize] bytes of every id, null for unused ids
    private readonly Dictionary<string, int> specialIds;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> specialLookup;
    private readonly Regex split;
    private readonly Regex? specialSplit;

    /// <param name="ranks">Token bytes by rank; unique, all 256 single bytes among them (callers validate).</param>
    /// <param name="specials">Special tokens and their ids, each at least ranks.Length.</param>
    /// <param name="pattern">The pre-tokenization regex.</param>
    private BpeTokenizer(byte[][] ranks, IEnumerable<KeyValuePair<string, int>> specials, string pattern)
    {
        this.ranks = ranks;
        Pattern = pattern;
        split = PreTokenizer.Compile(pattern);
        var byBytes = new Dictionary<byte[], int>(ranks.Length, ByteArrayComparer.Instance);
        for (int i = 0; i < ranks.Length; i++)
        {
            if (ranks[i].Length == 0 || !byBytes.TryAdd(ranks[i], i))
            {
                throw new ArgumentException($"rank {i} is empty or repeats an earlier token", nameof(ranks));
            }
        }

        rankOf = byBytes.GetAlternateLookup<ReadOnlySpan<byte>>();
        for (int b = 0; b < 256; b++)
        {
            byteRank[b] = rankOf.TryGetValue([(byte)b], out int r)
                ? r
                : throw new ArgumentException($"no rank for the single byte 0x{b:X2}", nameof(ranks));
        }

        mergeRank = BuildMerges(ranks, rankOf);
        specialIds = new Dictionary<string, int>(specials, StringComparer.Ordinal);
        specialLookup = specialIds.GetAlternateLookup<ReadOnlySpan<char>>();
        VocabSize = specialIds.Count == 0 ? ranks.Length : Math.Max(ranks.Length, specialIds.Values.Max() + 1);
        tokenBytes = new byte[VocabSize][];
        ranks.CopyTo(tokenBytes, 0);
        foreach (var (token, id) in specialIds)
        {
            if (id < ranks.Length || tokenBytes[id] is not null || token.Length == 0)
            {
                throw new ArgumentException($"special token '{token}' has id {id}, a rank or a repeated id", nameof(specials));
            }

            tokenBytes[id] = Encoding.UTF8.GetBytes(token);
        }

        if (specialIds.Count > 0)
        {
            // Longest first, so a special that is a prefix of another never wins.
            var alternatives = specialIds.Keys.OrderByDescending(s => s.Length).ThenBy(s => s, StringComparer.Ordinal).Select(Regex.Escape);
            specialSplit = new Regex(string.Join('|', alternatives), RegexOptions.Compiled | RegexOptions.CultureInvariant);
        }
    }

    /// <summary>Ids in use: ranks plus specials (one past the largest id).</summary>
    public int VocabSize { get; }

    /// <summary>Number of ranks (ordinary tokens); special ids start here.</summary>
    public int RankCount => ranks.Length;

    /// <summary>The pre-tokenization regex.</summary>
    public string Pattern { get; }

    /// <summary>Whether the pattern is <see cref="PreTokenizer.SplitDigitsPattern"/>: every digit its own token.</summary>
    public bool SplitsDigits => Pattern == PreTokenizer.SplitDigitsPattern;

    /// <summary>Special tokens by text.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokenIds => specialIds;

    /// <summary>256 byte tokens (rank = byte value) and <see cref="SpecialTokens.All"/>, no merges.</summary>
    public static BpeTokenizer ByteLevel() => new(ByteRanks(), DefaultSpecials(256), PreTokenizer.DefaultPattern);

    /// <summary>The id of a special token; throws naming the token if this tokenizer lacks it.</summary>
    public int SpecialTokenId(string token) =>
        specialIds.TryGetValue(token, out int id)
            ? id
            : throw new KeyNotFoundException($"special token '{token}' is not in this tokenizer (it has {string.Join(", ", specialIds.Keys)})");

    public bool IsSpecial(int id) => id >= ranks.Length && id < VocabSize && tokenBytes[id] is not null;

    /// <summary>The bytes of one token (a special's UTF-8 text for a special); throws for an id outside the vocabulary.</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) => CheckedBytes(id, 0);

    /// <summary>
    /// Encodes text. With <paramref name="allowSpecial"/>, the text of a special token becomes its id; without,
    /// it is encoded as ordinary text. Lone surrogates (not Unicode) are encoded as U+FFFD.
    /// </summary>
    public int[] Encode(string text, bool allowSpecial = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var output = new List<int>(text.Length / 3 + 4);
        if (!allowSpecial || specialSplit is null)
        {
            EncodeOrdinary(text, output);
            return [.. output];
        }

        int pos = 0;
        foreach (var m in specialSplit.EnumerateMatches(text))
        {
            EncodeOrdinary(text.AsSpan(pos, m.Index - pos), output);
            specialLookup.TryGetValue(text.AsSpan(m.Index, m.Length), out int id);
            output.Add(id);
            pos = m.Index + m.Length;
        }

        EncodeOrdinary(text.AsSpan(pos), output);
        return [.. output];
    }

    /// <summary>
    /// Encodes raw bytes, any bytes: valid UTF-8 runs are split and merged as text, each run of invalid bytes
    /// is one piece of its own. Never yields a special id. <see cref="DecodeBytes"/> gives the bytes back.
    /// </summary>
    public int[] EncodeBytes(ReadOnlySpan<byte> bytes)
    {
        var output = new List<int>(bytes.Length / 3 + 4);
        char[] chars = ArrayPool<char>.Shared.Rent(Math.Max(1, bytes.Length));
        try
        {
            while (bytes.Length > 0)
            {
                var status = Utf8.ToUtf16(bytes, chars, out int read, out int written, replaceInvalidSequences: false);
                EncodeOrdinary(chars.AsSpan(0, written), output);
                bytes = bytes[read..];
                if (status != OperationStatus.InvalidData)
                {
                    continue;
                }

                int invalid = 0;
                while (invalid < bytes.Length && Rune.DecodeFromUtf8(bytes[invalid..], out _, out int consumed) != OperationStatus.Done)
                {
                    invalid += consumed;
                }

                invalid = Math.Max(invalid, 1); // always progress
                EncodePiece(bytes[..invalid], output);
                bytes = bytes[invalid..];
            }
        }
        finally
        {
            ArrayPool<char>.Shared.Return(chars);
        }

        return [.. output];
    }

    /// <summary>Decodes to text; specials appear as their text; invalid UTF-8 becomes U+FFFD (the only loss).</summary>
    public string Decode(ReadOnlySpan<int> ids) => Encoding.UTF8.GetString(DecodeBytes(ids));

    /// <summary>Decodes to the exact bytes; throws <see cref="ArgumentException"/> naming an id outside the vocabulary.</summary>
    public byte[] DecodeBytes(ReadOnlySpan<int> ids)
    {
        int length = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            length += CheckedBytes(ids[i], i).Length;
        }

        var bytes = new byte[length];
        int at = 0;
        foreach (int id in ids)
        {
            tokenBytes[id].AsSpan().CopyTo(bytes.AsSpan(at));
            at += tokenBytes[id]!.Length;
        }

        return bytes;
    }

    private byte[] CheckedBytes(int id, int position)
    {
        if ((uint)id < (uint)tokenBytes.Length && tokenBytes[id] is { } bytes)
        {
            return bytes;
        }

        throw new ArgumentException(
            $"token id {id} at position {position} is outside the vocabulary (ids 0..{VocabSize - 1}" +
            (id >= 0 && id < VocabSize ? $"; {id} is not assigned)" : ")"), "ids");
    }

    private void EncodeOrdinary(ReadOnlySpan<char> text, List<int> output)
    {
        try
        {
            EncodePieces(text, output);
        }
        catch (RegexMatchTimeoutException)
        {
            throw new K2RL.Common.K2Exception(
                $"the tokenizer's pre-tokenizer pattern did not split a {text.Length}-char text within {PreTokenizer.MatchTimeout.TotalSeconds} s: "
                + "it backtracks catastrophically on this input; use a tokenizer whose pattern does not nest quantifiers");
        }
    }

    private void EncodePieces(ReadOnlySpan<char> text, List<int> output)
    {
        byte[]? rented = null;
        Span<byte> buffer = stackalloc byte[256];
        var pieces = new PieceEnumerator(split, text);
        while (pieces.MoveNext())
        {
            var piece = text.Slice(pieces.Start, pieces.Length);
            int max = piece.Length * 3; // UTF-8 of one UTF-16 char is at most 3 bytes (a pair: 4 for 2)
            if (max > buffer.Length)
            {
                if (rented is not null)
                {
                    ArrayPool<byte>.Shared.Return(rented);
                }

                rented = ArrayPool<byte>.Shared.Rent(max);
                buffer = rented;
            }

            int n = Encoding.UTF8.GetBytes(piece, buffer);
            EncodePiece(buffer[..n], output);
        }

        if (rented is not null)
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private void EncodePiece(ReadOnlySpan<byte> piece, List<int> output)
    {
        if (piece.Length == 0)
        {
            return;
        }

        if (piece.Length == 1)
        {
            output.Add(byteRank[piece[0]]);
            return;
        }

        if (rankOf.TryGetValue(piece, out int whole))
        {
            output.Add(whole); // tiktoken's shortcut: a piece that is a token is that token
            return;
        }

        int[]? rented = null;
        Span<int> ids = piece.Length <= 256 ? stackalloc int[piece.Length] : (rented = ArrayPool<int>.Shared.Rent(piece.Length));
        ids = ids[..piece.Length];
        for (int i = 0; i < piece.Length; i++)
        {
            ids[i] = byteRank[piece[i]];
        }

        int n = piece.Length <= ScanMergeLimit ? MergeByScan(ids, mergeRank) : MergeByHeap(ids, mergeRank);
        foreach (int id in ids[..n])
        {
            output.Add(id);
        }

        if (rented is not null)
        {
            ArrayPool<int>.Shared.Return(rented);
        }
    }

    internal static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Every split of every token into two tokens, as a pair -> rank table (tiktoken's "is the concatenation a token").</summary>
    private static Dictionary<long, int> BuildMerges(byte[][] ranks, Dictionary<byte[], int>.AlternateLookup<ReadOnlySpan<byte>> rankOf)
    {
        var merges = new Dictionary<long, int>(ranks.Length * 2, PairKeyComparer.Instance);
        for (int rank = 0; rank < ranks.Length; rank++)
        {
            var token = ranks[rank].AsSpan();
            for (int k = 1; k < token.Length; k++)
            {
                if (rankOf.TryGetValue(token[..k], out int left) && rankOf.TryGetValue(token[k..], out int right))
                {
                    merges[PairKey(left, right)] = rank;
                }
            }
        }

        return merges;
    }

    /// <summary>Merges in place, lowest rank first and leftmost on ties; returns the new length. O(n²) for short pieces.</summary>
    internal static int MergeByScan(Span<int> ids, Dictionary<long, int> merges)
    {
        int n = ids.Length;
        if (n < 2)
        {
            return n;
        }

        Span<int> pairRank = stackalloc int[n - 1]; // pairRank[i]: rank of ids[i] ++ ids[i+1], or int.MaxValue
        for (int i = 0; i < n - 1; i++)
        {
            pairRank[i] = merges.TryGetValue(PairKey(ids[i], ids[i + 1]), out int r) ? r : int.MaxValue;
        }

        while (n > 1)
        {
            int best = int.MaxValue, at = -1;
            for (int i = 0; i < n - 1; i++)
            {
                if (pairRank[i] < best)
                {
                    (best, at) = (pairRank[i], i);
                }
            }

            if (at < 0)
            {
                break;
            }

            ids[at] = best;
            ids[(at + 2)..n].CopyTo(ids[(at + 1)..]);
            pairRank[(at + 1)..(n - 1)].CopyTo(pairRank[at..]);
            n--;
            if (at < n - 1)
            {
                pairRank[at] = merges.TryGetValue(PairKey(ids[at], ids[at + 1]), out int r) ? r : int.MaxValue;
            }

            if (at > 0)
            {
                pairRank[at - 1] = merges.TryGetValue(PairKey(ids[at - 1], ids[at]), out int r) ? r : int.MaxValue;
            }
        }

        return n;
    }

    /// <summary>Same result as <see cref="MergeByScan"/> in O(n log n): a linked list of parts and a heap of (rank, position).</summary>
    internal static int MergeByHeap(Span<int> ids, Dictionary<long, int> merges)
    {
        int n = ids.Length;
        var next = new int[n];
        var prev = new int[n];
        var heap = new PriorityQueue<int, long>(n);
        for (int i = 0; i < n; i++)
        {
            (prev[i], next[i]) = (i - 1, i + 1 < n ? i + 1 : -1);
        }

        void Push(Span<int> parts, int at)
        {
            if (at >= 0 && next[at] >= 0 && merges.TryGetValue(PairKey(parts[at], parts[next[at]]), out int r))
            {
                heap.Enqueue(at, ((long)r << 32) | (uint)at); // rank first, then position: leftmost on ties
            }
        }

        for (int i = 0; i < n - 1; i++)
        {
            Push(ids, i);
        }

        while (heap.TryDequeue(out int at, out long priority))
        {
            int j = next[at];
            if (ids[at] < 0 || j < 0 || !merges.TryGetValue(PairKey(ids[at], ids[j]), out int r) || r != (int)(priority >> 32))
            {
                continue; // stale: the part was merged away or its pair changed
            }

            ids[at] = r;
            ids[j] = -1;
            next[at] = next[j];
            if (next[j] >= 0)
            {
                prev[next[j]] = at;
            }

            Push(ids, prev[at]);
            Push(ids, at);
        }

        int count = 0;
        for (int i = 0; i < n; i++)
        {
            if (ids[i] >= 0)
            {
                ids[count++] = ids[i];
            }
        }

        return count;
    }

    private static byte[][] ByteRanks()
    {
        var result = new byte[256][];
        for (int b = 0; b < 256; b++)
        {
            result[b] = [(byte)b];
        }

        return result;
    }

    private static IEnumerable<KeyValuePair<string, int>> DefaultSpecials(int rankCount) =>
        SpecialTokens.All.Select((token, i) => KeyValuePair.Create(token, rankCount + i));
}
