using System.Text.Json;
using K2RL.Model.Tokenization;
using K2RL.Trainer.Pretraining;

namespace K2RL.Trainer.Tests;

public class DataTests
{
    private static BatchPacker Packer(ulong seed, DataSettings data) =>
        new(new DocumentStream(seed, data, PretrainLoopTests.Corpus), Encoder, 272);

    private static readonly BpeTextEncoder Encoder = new(BpeTokenizer.ByteLevel());

    private static List<int[]> Batches(BatchPacker p, int n, int B = 3, int T = 20)
    {
        var list = new List<int[]>();
        for (int i = 0; i < n; i++)
        {
            var x = new int[B * T];
            var y = new int[B * T];
            p.Next(x, y, B, T);
            list.Add(x.Concat(y).ToArray());
        }

        return list;
    }

    [Fact]
    public void Packing_IsDeterministicForASeed_AndDiffersAcrossSeeds()
    {
        var data = new DataSettings { SyntheticTasks = ["sum", "rev"] };
        Assert.Equal(Batches(Packer(1, data), 5), Batches(Packer(1, data), 5));
        Assert.NotEqual(Batches(Packer(1, data), 5), Batches(Packer(2, data), 5));
    }

    [Fact]
    public void Packing_SeparatesDocumentsAndShiftsTargetsByOne()
    {
        var p = Packer(3, new DataSettings { SyntheticTasks = ["sum"] });
        var x = new int[64];
        var y = new int[64];
        p.Next(x, y, 1, 64);
        Assert.Equal(x[1..], y[..^1]);
        Assert.Contains(Encoder.Separator, x);
        string text = Encoder.Decode(x.TakeWhile(t => t != Encoder.Separator).ToArray());
        Assert.Matches(@"^\d+\+\d+=\d+$", text);
    }

    [Fact]
    public void Cursor_ResumesExactly_ThroughJson()
    {
        using var dir = new TestUtil.TempDir();
        string txt = Path.Combine(dir.Path, "a.txt"), jsonl = Path.Combine(dir.Path, "b.jsonl");
        File.WriteAllText(txt, "first paragraph\nstill first\n\nsecond one\n\n\nthird");
        File.WriteAllText(jsonl, "{\"text\": \"json doc one\"}\n\n{\"text\": \"json doc two\", \"id\": 2}\n");
        var data = new DataSettings { SyntheticTasks = ["sum", "rev"], Files = [txt, jsonl], FileFraction = 0.5f };
        var whole = Batches(Packer(9, data), 12);
        var first = Packer(9, data);
        var head = Batches(first, 5);
        string saved = JsonSerializer.Serialize(first.Cursor);
        var second = Packer(9, data);
        second.Restore(JsonSerializer.Deserialize<DataCursor>(saved)!);
        var tail = Batches(second, 7);
        Assert.Equal(whole, head.Concat(tail).ToList());
        Assert.True(first.TokensByKind.ContainsKey("file"));
    }

    [Fact]
    public void Files_AreReadAsDocuments()
    {
        using var dir = new TestUtil.TempDir();
        string txt = Path.Combine(dir.Path, "a.txt"), bad = Path.Combine(dir.Path, "bad.jsonl");
        File.WriteAllText(txt, "one\ntwo\n\nthree\n");
        Assert.Equal(["one\ntwo", "three"], DocumentStream.ReadDocuments(txt));
        File.WriteAllText(bad, "{\"text\": \"ok\"}\n{\"body\": 1}\n");
        var e = Assert.Throws<K2RL.Common.CorruptFileException>(() => DocumentStream.ReadDocuments(bad).ToList());
        Assert.Contains("line 2", e.Message);
    }
}
