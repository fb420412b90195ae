using K2RL.Common;
using K2RL.Model.Tokenization;

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

/// <summary>The BPE tokenizer as the data pipeline sees it: chat special tokens encode as one id; documents end in &lt;|endoftext|&gt;.</summary>
public sealed class BpeTextEncoder(BpeTokenizer tokenizer) : ITextEncoder
{
    /// <summary>Vocabulary of the untrained byte-level tokenizer: 256 bytes + the specials.</summary>
    public static int ByteLevelVocab { get; } = BpeTokenizer.ByteLevel().VocabSize;

    public BpeTokenizer Tokenizer { get; } = tokenizer;

    public int VocabSize => Tokenizer.VocabSize;

    public int Separator { get; } = tokenizer.SpecialTokenId(SpecialTokens.EndOfText);

    public int[] Encode(string text) => Tokenizer.Encode(text, allowSpecial: true);

    public string Decode(ReadOnlySpan<int> ids) => Tokenizer.Decode(ids);

    /// <summary>
    /// The job's tokenizer: "bytes" (byte-level, no training), "train" (BPE trained to the model's vocab_size on
    /// <paramref name="sample"/> documents, every digit its own token when <paramref name="splitDigits"/>), or a
    /// tokenizer directory (its saved pattern decides the split).
    /// </summary>
    public static BpeTextEncoder Create(string spec, int vocabSize, Func<IEnumerable<string>> sample, Action<string>? log = null, bool splitDigits = false)
    {
        var tok = spec switch
        {
            "bytes" => BpeTokenizer.ByteLevel(),
            "train" => BpeTokenizer.Train(sample(), vocabSize, pattern: PreTokenizer.Pattern(splitDigits), log: log),
            _ => BpeTokenizer.Load(spec),
        };
        if (tok.VocabSize > vocabSize)
        {
            throw new ConfigException($"tokenizer \"{spec}\" has {tok.VocabSize} ids, more than the model's vocab_size {vocabSize}");
        }

        return new BpeTextEncoder(tok);
    }
}
