using System.Text.Json;
using K2RL.Common;
using K2RL.Gym;

namespace K2RL.Trainer.Pretraining;

/// <summary>Where the document stream stands: enough to continue it exactly (saved in state.json).</summary>
public sealed record DataCursor
{
    /// <summary>Documents drawn so far (the index of the next one).</summary>
    public long Documents { get; init; }

    /// <summary>Next user file, the documents already read from it, and how many passes over all files finished.</summary>
    public int FileIndex { get; init; }

    public long FileDocument { get; init; }

    public int FileEpoch { get; init; }

    /// <summary>Tokens of the current document (separator included) not yet packed into a batch.</summary>
    public int[] Pending { get; init; } = [];
}

/// <summary>
/// A deterministic stream of documents: document n's source (file or synthetic) and, if synthetic, its kind,
/// difficulty and task seed are hashes of (seed, n); files are read in order, forever, one document at a time.
/// Kinds and difficulties are drawn uniformly unless the settings weight them (<see cref="MixWeights"/>).
/// </summary>
public sealed class DocumentStream
{
    private readonly ulong seed;
    private readonly DataSettings settings;
    private readonly string[] kinds;
    private readonly DocumentGenerator[] generators;  // [kinds]
    private readonly double[]? kindCumulative;        // [kinds] cumulative task weights; null: uniform
    private readonly double[]? difficultyCumulative;  // [max difficulty] cumulative difficulty weights; null: uniform
    private IEnumerator<string>? fileDocs;

    public DocumentStream(ulong seed, DataSettings settings, SyntheticCorpus corpus)
    {
        this.seed = seed;
        this.settings = settings;
        kinds = settings.SyntheticTasks.ToArray();
        generators = kinds.Select(corpus.Generator).ToArray();

        if (settings.TaskWeights is { } taskWeights)
        {
            kindCumulative = MixWeights.Cumulative(kinds.Select(k => taskWeights.GetValueOrDefault(k, 1f)).ToArray());
        }

        if (settings.DifficultyWeights is { } difficultyWeights)
        {
            if (difficultyWeights.Count != settings.SyntheticMaxDifficulty)
            {
                throw new ConfigException($"{difficultyWeights.Count} difficulty weights for max_difficulty {settings.SyntheticMaxDifficulty}");
            }

            difficultyCumulative = MixWeights.Cumulative(difficultyWeights);
        }
    }

    public long Documents { get; private set; }

    public int FileIndex { get; private set; }

    public long FileDocument { get; private set; }

    public int FileEpoch { get; private set; }

    public void Restore(DataCursor cursor)
    {
        Documents = cursor.Documents;
        FileIndex = cursor.FileIndex;
        FileDocument = cursor.FileDocument;
        FileEpoch = cursor.FileEpoch;
        fileDocs = null;
    }

    /// <summary>The next document's text and its kind ("file" or a synthetic task kind).</summary>
    public (string Text, string Kind) Next()
    {
        long n = Documents++;
        bool fromFile = settings.Files.Count > 0
            && (kinds.Length == 0 || Unit(Hash(seed, (ulong)n, 1)) < settings.FileFraction);
        if (fromFile)
        {
            return (NextFileDocument(), "file");
        }

        ulong kindHash = Hash(seed, (ulong)n, 2), difficultyHash = Hash(seed, (ulong)n, 3);
        int k = kindCumulative is null ? (int)(kindHash % (ulong)kinds.Length) : MixWeights.Pick(kindCumulative, Unit(kindHash));
        int difficulty = 1 + (difficultyCumulative is null
            ? (int)(difficultyHash % (ulong)settings.SyntheticMaxDifficulty)
            : MixWeights.Pick(difficultyCumulative, Unit(difficultyHash)));
        long taskSeed = (long)(Hash(seed, (ulong)n, 4) >> 1);
        return (generators[k](taskSeed, difficulty), kinds[k]);
    }

    private string NextFileDocument()
    {
        for (int guard = 0; guard <= settings.Files.Count + 1; guard++)
        {
            if (fileDocs is null)
            {
                fileDocs = ReadDocuments(settings.Files[FileIndex]).Skip(checked((int)FileDocument)).GetEnumerator();
            }

            if (fileDocs.MoveNext())
            {
                FileDocument++;
                return fileDocs.Current;
            }

            fileDocs.Dispose();
            fileDocs = null;
            FileDocument = 0;
            FileIndex++;
            if (FileIndex == settings.Files.Count)
            {
                FileIndex = 0;
                FileEpoch++;
            }
        }

        throw new ConfigException($"data files hold no documents: {string.Join(", ", settings.Files)}");
    }

    /// <summary>.jsonl: one document per line from its "text" field; anything else: blank-line-separated blocks.</summary>
    public static IEnumerable<string> ReadDocuments(string path)
    {
        using var reader = new StreamReader(path);
        bool jsonl = path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase);
        var block = new System.Text.StringBuilder();
        int lineNo = 0;
        while (reader.ReadLine() is { } line)
        {
            lineNo++;
            if (jsonl)
            {
                if (line.Trim().Length == 0)
                {
                    continue;
                }

                string? text;
                try
                {
                    using var doc = JsonDocument.Parse(line);
                    text = doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("text", out var t)
                        && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
                }
                catch (JsonException e)
                {
                    throw new CorruptFileException(path, $"line {lineNo}: not JSON ({e.Message})");
                }

                yield return text ?? throw new CorruptFileException(path, $"line {lineNo}: no string field \"text\"");
            }
            else if (line.Trim().Length == 0)
            {
                if (block.Length > 0)
                {
                    yield return block.ToString();
                    block.Clear();
                }
            }
            else
            {
                if (block.Length > 0)
                {
                    block.Append('\n');
                }

                block.Append(line);
            }
        }

        if (block.Length > 0)
        {
            yield return block.ToString();
        }
    }

    internal static ulong Hash(ulong seed, ulong n, ulong salt)
    {
        return SplitMix64.Mix(seed ^ (n * SplitMix64.Golden) ^ (salt * 0xD1B54A32D192ED03UL));
    }

    private static double Unit(ulong h) => (h >> 11) * (1.0 / (1UL << 53));
}
