namespace K2RL.Trainer.Pretraining;

/// <summary>
/// Packs the document stream into B×T batches: documents are tokenized, each followed by the separator,
/// concatenated, and cut into rows of T+1 tokens (inputs = the first T, targets = the last T). The same seed
/// gives the same batches; <see cref="Cursor"/>/<see cref="Restore"/> continue exactly where a run stopped.
/// </summary>
public sealed class BatchPacker
{
    private readonly DocumentStream docs;
    private readonly ITextEncoder encoder;
    private readonly int vocab;
    private int[] pending = [];
    private int pendingPos;

    public BatchPacker(DocumentStream docs, ITextEncoder encoder, int modelVocab)
    {
        this.docs = docs;
        this.encoder = encoder;
        vocab = modelVocab;
        if (encoder.VocabSize > modelVocab)
        {
            throw new K2RL.Common.ConfigException($"the tokenizer has {encoder.VocabSize} ids but the model's vocab_size is {modelVocab}");
        }
    }

    /// <summary>Tokens packed per document kind so far in this process (for logging the mixture).</summary>
    public Dictionary<string, long> TokensByKind { get; } = new(StringComparer.Ordinal);

    public DataCursor Cursor => new()
    {
        Documents = docs.Documents,
        FileIndex = docs.FileIndex,
        FileDocument = docs.FileDocument,
        FileEpoch = docs.FileEpoch,
        Pending = pending[pendingPos..],
    };

    public void Restore(DataCursor cursor)
    {
        docs.Restore(cursor);
        pending = cursor.Pending.ToArray();
        pendingPos = 0;
    }

    /// <summary>Fills inputs[B·T] and targets[B·T].</summary>
    public void Next(int[] inputs, int[] targets, int B, int T)
    {
        var row = new int[T + 1];
        for (int b = 0; b < B; b++)
        {
            for (int t = 0; t <= T; t++)
            {
                row[t] = NextToken();
            }

            Array.Copy(row, 0, inputs, b * T, T);
            Array.Copy(row, 1, targets, b * T, T);
        }
    }

    private int NextToken()
    {
        while (pendingPos >= pending.Length)
        {
            var (text, kind) = docs.Next();
            var ids = encoder.Encode(text);
            pending = new int[ids.Length + 1];
            ids.CopyTo(pending, 0);
            pending[^1] = encoder.Separator;
            pendingPos = 0;
            TokensByKind[kind] = TokensByKind.GetValueOrDefault(kind) + pending.Length;
        }

        int id = pending[pendingPos++];
        return id < vocab ? id : throw new InvalidOperationException($"token id {id} outside the model's vocab {vocab}");
    }
}
