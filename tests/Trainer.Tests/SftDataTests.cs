using K2RL.Common;
using K2RL.Gym;
using K2RL.Gym.Synthesis;
using K2RL.Model.Tokenization;
using K2RL.Trainer.Sft;

namespace K2RL.Trainer.Tests;

/// <summary>The SFT data stream: overlong records, the held-out split, seeded epochs, the cursor, micro-batch masks.</summary>
public class SftDataTests
{
    private static readonly BpeTokenizer Tokenizer = BpeTokenizer.ByteLevel();
    private static readonly GymRegistry Registry = GymRegistry.CreateDefault();
    private static readonly string[] Kinds = ["arithmetic", "countdown", "list_ops", "tool_use"];

    [Fact]
    public void FixtureRecords_ValidateAndRoundTripThroughTheDatasetReader()
    {
        using var dir = new TestUtil.TempDir();
        var records = SftFixture.Records(Registry, Kinds, [1, 2], perCell: 3);
        string path = SftFixture.Write(Path.Combine(dir.Path, "train.jsonl"), records);
        var read = SftDataset.Read(path);
        Assert.Equal(records.Select(r => r.ToJsonLine()), read.Select(r => r.ToJsonLine()));
        Assert.All(read, r => Assert.Null(r.Validate()));

        // Exploratory runs: K2RL_SFT_FIXTURE_OUT=FILE K2RL_SFT_FIXTURE_PER_CELL=N writes a bigger set (train split only).
        if (Environment.GetEnvironmentVariable("K2RL_SFT_FIXTURE_OUT") is { Length: > 0 } outPath)
        {
            int n = int.Parse(Environment.GetEnvironmentVariable("K2RL_SFT_FIXTURE_PER_CELL") ?? "100");
            SftFixture.Write(outPath, SftFixture.Records(Registry, Kinds, [1, 2], n, seedBase: 1000));
        }
    }

    [Fact]
    public void OverlongRecords_AreTruncatedOrDropped_AndCounted()
    {
        var records = SftFixture.Records(Registry, ["arithmetic", "tool_use"], [1], perCell: 4);
        var lengths = records.Select(r => SftRenderer.Render(Tokenizer, r).Tokens.Length).ToArray();
        int seqLen = lengths.Order().ElementAt(lengths.Length / 2);   // about half the records are longer
        int over = lengths.Count(n => n > seqLen + 1);
        Assert.InRange(over, 1, records.Count - 1);

        var truncated = new SftData(records, Tokenizer, seqLen, OverlongPolicy.Truncate, 0, 1);
        Assert.Equal(over, truncated.Stats.Truncated + truncated.Stats.NoTrainedTokens);
        Assert.Equal(0, truncated.Stats.Dropped);
        Assert.Equal(lengths.Where(n => n > seqLen + 1).Sum(n => (long)n - seqLen - 1), truncated.Stats.TruncatedTokens);
        Assert.All(truncated.Train, s => Assert.True(s.Tokens.Length <= seqLen + 1));

        var dropped = new SftData(records, Tokenizer, seqLen, OverlongPolicy.Drop, 0, 1);
        Assert.Equal(over, dropped.Stats.Dropped);
        Assert.Equal(records.Count - over, dropped.Train.Count);
        Assert.Equal(0, dropped.Stats.Truncated);
    }

    [Fact]
    public void Epochs_VisitEveryTrainingRecordOnce_InASeededOrderPerEpoch_AndTheCursorResumesTheStream()
    {
        var records = SftFixture.Records(Registry, Kinds, [1], perCell: 5);
        var a = new SftData(records, Tokenizer, 1000, OverlongPolicy.Truncate, heldOutRecords: 4, seed: 9);
        Assert.Equal(16, a.Train.Count);
        Assert.Empty(a.Train.Select(s => s.Id).Intersect(a.HeldOut.Select(s => s.Id)));

        var epoch0 = a.Next(16).Select(s => s.Id).ToList();
        var epoch1 = a.Next(16).Select(s => s.Id).ToList();
        Assert.Equal(a.Train.Select(s => s.Id).Order(), epoch0.Order());
        Assert.Equal(epoch0.Order(), epoch1.Order());
        Assert.NotEqual(epoch0, epoch1);

        // Crossing the epoch boundary mid-step, then resuming from the cursor: the same stream.
        var b = new SftData(records, Tokenizer, 1000, OverlongPolicy.Truncate, 4, 9);
        var c = new SftData(records, Tokenizer, 1000, OverlongPolicy.Truncate, 4, 9);
        var first = b.Next(10).Concat(b.Next(10)).Select(s => s.Id).ToList();
        c.Next(10);
        c.Next(10);
        Assert.Equal(new SftCursor(1, 4), c.Cursor);
        var d = new SftData(records, Tokenizer, 1000, OverlongPolicy.Truncate, 4, 9);
        d.Restore(c.Cursor);
        Assert.Equal(b.Next(7).Select(s => s.Id), d.Next(7).Select(s => s.Id));
        Assert.Equal(epoch0.Concat(epoch1).Take(20), first);

        Assert.Throws<CorruptFileException>(() => d.Restore(new SftCursor(0, 17)));
    }

    [Fact]
    public void MicroBatches_TargetExactlyTheTrainedTokens_SortedByLength_PaddedAndMasked()
    {
        var records = SftFixture.Records(Registry, Kinds, [1, 2], perCell: 1);
        var data = new SftData(records, Tokenizer, 1024, OverlongPolicy.Truncate, 0, 3);
        var seqs = data.Next(8);
        var batches = data.Batches(seqs, micro: 3);
        Assert.Equal(8, batches.Sum(b => b.B));
        Assert.InRange(batches.Count, 3, 8);
        Assert.All(batches, b => Assert.InRange(b.B, 1, 3));                // never more rows than a group of the step
        Assert.Equal(seqs.Sum(s => s.Trained.Skip(1).Count(t => t)), batches.Sum(b => b.CountTargets()));
        Assert.All(batches, b => Assert.Equal(0, b.T % SftData.RowAlign));
        Assert.True(batches.Select(b => b.T).SequenceEqual(batches.Select(b => b.T).Order()), "sorted by length");
        var byLength = seqs.OrderBy(s => s.Tokens.Length).ToList();
        var row0 = byLength[0];
        var b0 = batches[0];
        for (int p = 0; p < b0.T; p++)
        {
            bool inside = p < row0.Tokens.Length - 1;
            Assert.Equal(inside ? row0.Tokens[p] : 0, b0.Inputs[p]);
            Assert.Equal(inside && row0.Trained[p + 1] ? row0.Tokens[p + 1] : -1, b0.Targets[p]);
        }
    }

    [Fact]
    public void SplitByLength_KeepsRowsOfSimilarLengthTogether_AndPaysForEachExtraMicroBatch()
    {
        Assert.Equal([(0, 4)], SftData.SplitByLength([64, 64, 96, 96]));                 // 32 padded tokens < one more pass
        Assert.Equal([(0, 3), (3, 2)], SftData.SplitByLength([128, 128, 160, 608, 640]));  // a short and a long group
        Assert.Equal([(0, 1)], SftData.SplitByLength([32]));
    }
}
