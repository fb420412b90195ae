using System.Text;

namespace K2RL.Trainer.Pretraining;

/// <summary>What the data pipeline needs from a tokenizer: text to ids, ids to text, and the document separator id.</summary>
public interface ITextEncoder
{
    int VocabSize { get; }

    /// <summary>The id placed between packed documents (end of text).</summary>
    int Separator { get; }

    int[] Encode(string text);

    string Decode(ReadOnlySpan<int> ids);
}

/// <summary>UTF-8 bytes as ids 0..255, separator 256: needs no training, works for any vocab_size ≥ 257.</summary>
public sealed class ByteTokenizer : ITextEncoder
{
    public const int VocabNeeded = 257;

    public int VocabSize => VocabNeeded;

    public int Separator => 256;

    public int[] Encode(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var ids = new int[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
        {
            ids[i] = bytes[i];
        }

        return ids;
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new List<byte>(ids.Length);
        foreach (int id in ids)
        {
            if (id is >= 0 and < 256)
            {
                bytes.Add((byte)id);
            }
        }

        return Encoding.UTF8.GetString(bytes.ToArray());
    }
}
