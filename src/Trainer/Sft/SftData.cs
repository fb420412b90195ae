using K2RL.Common;
using K2RL.Gym.Synthesis;
using K2RL.Model.Tokenization;
using K2RL.Trainer.Training;

namespace K2RL.Trainer.Sft;

/// <summary>Where the SFT data stream stands: the epoch and the next position in that epoch's shuffled order.</summary>
public sealed record SftCursor(long Epoch, int Position);

/// <summary>What preparing the dataset did, for the log and the run's result.</summary>
public sealed record SftDataStats(int Records, int Train, int HeldOut, int Truncated, long TruncatedTokens, int Dropped, int NoTrainedTokens,
    long TrainTokens, long TrainedTokens);

/// <summary>
/// The SFT dataset as training rows: every record rendered (<see cref="SftRenderer"/>), records over seq_len + 1
/// tokens truncated or dropped by the job's policy (counted, never silently), records left with no trained token
/// dropped (counted), then a seeded shuffle splits off the held-out records. Training draws records epoch by epoch,
/// each epoch in its own seeded order; <see cref="Cursor"/> is all the state a resume needs.
/// </summary>
public sealed class SftData
{
    /// <summary>Micro-batch lengths are rounded up to this (fewer distinct shapes), never past seq_len.</summary>
    public const int RowAlign = 32;

    private readonly List<SftSequence> train;
    private readonly List<SftSequence> heldOut;
    private readonly ulong seed;
    private readonly int seqLen;
    private int[] order = [];
    private long orderEpoch = -1;

    public SftData(IReadOnlyList<SftRecord> records, BpeTokenizer tokenizer, int seqLen, OverlongPolicy overlong, int heldOutRecords, ulong seed)
    {
        this.seed = seed;
        this.seqLen = seqLen;
        var kept = new List<SftSequence>(records.Count);
        int truncated = 0, dropped = 0, empty = 0;
        long cutTokens = 0;
        foreach (var record in records)
        {
            var s = SftRenderer.Render(tokenizer, record);
            if (s.Tokens.Length > seqLen + 1)
            {
                if (overlong == OverlongPolicy.Drop)
                {
                    dropped++;
                    continue;
                }

                truncated++;
                cutTokens += s.Tokens.Length - (seqLen + 1);
                s = s.Truncate(seqLen + 1);
            }

            if (!s.Trained.AsSpan(1).Contains(true))
            {
                empty++;   // nothing to learn within the context (the first token is never a target)
                continue;
            }

            kept.Add(s);
        }

        if (heldOutRecords >= kept.Count)
        {
            throw new ConfigException($"data.held_out_records {heldOutRecords} leaves no training record ({kept.Count} usable of {records.Count})");
        }

        var split = Shuffled(kept.Count, new SplitMix64(seed ^ 0x48454C44UL));
        heldOut = split.Take(heldOutRecords).Order().Select(i => kept[i]).ToList();
        train = split.Skip(heldOutRecords).Order().Select(i => kept[i]).ToList();
        Stats = new SftDataStats(records.Count, train.Count, heldOut.Count, truncated, cutTokens, dropped, empty,
            train.Sum(s => (long)s.Tokens.Length), train.Sum(s => (long)s.TrainedTokens));
    }

    public SftDataStats Stats { get; }

    public IReadOnlyList<SftSequence> Train => train;

    public IReadOnlyList<SftSequence> HeldOut => heldOut;

    public SftCursor Cursor { get; private set; } = new(0, 0);

    public void Restore(SftCursor cursor)
    {
        if (cursor.Epoch < 0 || cursor.Position < 0 || cursor.Position > train.Count)
        {
            throw new CorruptFileException("sft_state.json", $"data cursor (epoch {cursor.Epoch}, position {cursor.Position}) is outside the {train.Count} training records");
        }

        Cursor = cursor;
    }

    /// <summary>The next <paramref name="count"/> training records in stream order (crossing into the next epoch as needed).</summary>
    public List<SftSequence> Next(int count)
    {
        var result = new List<SftSequence>(count);
        while (result.Count < count)
        {
            var (epoch, position) = Cursor;
            if (position >= train.Count)
            {
                Cursor = new SftCursor(epoch + 1, 0);
                continue;
            }

            result.Add(train[OrderOf(epoch)[position]]);
            Cursor = new SftCursor(epoch, position + 1);
        }

        return result;
    }

    /// <summary>
    /// One optimizer step's micro-batches: the sequences sorted by length and cut into <paramref name="micro"/> groups
    /// (at most batch_size rows each, the memory bound), each group further split where rows of very different lengths
    /// would pad each other (<see cref="SplitByLength"/>). Splitting changes nothing but the padding: the step's loss is
    /// the per-token mean over all its micro-batches (<see cref="TrainStep"/>). Each micro-batch is one row per record,
    /// its length the longest input rounded up to <see cref="RowAlign"/> (at most seq_len), targets masked (−1) except
    /// on trained tokens.
    /// </summary>
    public List<MicroBatch> Batches(IReadOnlyList<SftSequence> sequences, int micro)
    {
        var sorted = sequences.Select((s, i) => (S: s, I: i)).OrderBy(x => x.S.Tokens.Length).ThenBy(x => x.I).Select(x => x.S).ToList();
        int per = (sorted.Count + micro - 1) / micro;
        var batches = new List<MicroBatch>(micro);
        for (int start = 0; start < sorted.Count; start += per)
        {
            var group = sorted.GetRange(start, Math.Min(per, sorted.Count - start));
            batches.AddRange(SplitByLength(group.Select(RowLength).ToArray()).Select(r => Rows(group.GetRange(r.Start, r.Count))));
        }

        return batches;
    }

    /// <summary>
    /// Cuts rows sorted by length into runs minimizing padded tokens plus <see cref="MicroBatchCost"/> per run (an exact
    /// dynamic program over the ≤ batch_size rows).
    /// </summary>
    public static List<(int Start, int Count)> SplitByLength(int[] lengths)
    {
        int n = lengths.Length;
        var best = new long[n + 1];
        var cut = new int[n + 1];
        for (int j = 1; j <= n; j++)
        {
            best[j] = long.MaxValue;
            for (int i = 0; i < j; i++)
            {
                long cost = best[i] + (long)(j - i) * lengths[j - 1] + MicroBatchCost;
                if (cost < best[j])
                {
                    (best[j], cut[j]) = (cost, i);
                }
            }
        }

        var runs = new List<(int, int)>();
        for (int j = n; j > 0; j = cut[j])
        {
            runs.Add((cut[j], j - cut[j]));
        }

        runs.Reverse();
        return runs;
    }

    /// <summary>What one more micro-batch costs, in padded tokens (its fixed per-pass work), when splitting a group.</summary>
    public const int MicroBatchCost = 128;

    private int RowLength(SftSequence s) => Math.Min(seqLen, (s.Tokens.Length - 1 + RowAlign - 1) / RowAlign * RowAlign);

    /// <summary>The sequences as one micro-batch (inputs: tokens 0..n−2; target p: token p+1 where it is trained, else −1).</summary>
    public MicroBatch Rows(IReadOnlyList<SftSequence> rows)
    {
        int T = rows.Max(RowLength);
        int B = rows.Count;
        var inputs = new int[B * T];
        var targets = new int[B * T];
        Array.Fill(targets, -1);
        for (int b = 0; b < B; b++)
        {
            var s = rows[b];
            for (int p = 0; p < s.Tokens.Length - 1; p++)
            {
                inputs[b * T + p] = s.Tokens[p];
                targets[b * T + p] = s.Trained[p + 1] ? s.Tokens[p + 1] : -1;
            }
        }

        return new MicroBatch(inputs, targets, B, T);
    }

    /// <summary>Epoch <paramref name="epoch"/>'s order of the training records (a seeded shuffle per epoch).</summary>
    private int[] OrderOf(long epoch)
    {
        if (orderEpoch != epoch)
        {
            order = Shuffled(train.Count, new SplitMix64(seed ^ ((ulong)(epoch + 1) * SplitMix64.Golden)));
            orderEpoch = epoch;
        }

        return order;
    }

    private static int[] Shuffled(int n, SplitMix64 rng)
    {
        var a = Enumerable.Range(0, n).ToArray();
        for (int i = n - 1; i > 0; i--)
        {
            int j = (int)(rng.NextUInt64() % (ulong)(i + 1));
            (a[i], a[j]) = (a[j], a[i]);
        }

        return a;
    }
}
