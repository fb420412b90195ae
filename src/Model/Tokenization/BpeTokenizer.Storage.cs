using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;
using K2RL.Common;

namespace K2RL.Model.Tokenization;

public sealed partial class BpeTokenizer
{
    /// <summary>The rank file in a tokenizer directory (tiktoken format, as Kimi-K2 ships it).</summary>
    public const string RankFileName = "tiktoken.model";

    /// <summary>How far past the ranks a special token's id may sit (Kimi K2 leaves 256 ids; this is far more).</summary>
    public const int MaxSpecialIdGap = 1 << 20;

    /// <summary>The special tokens and pattern in a tokenizer directory.</summary>
    public const string ConfigFileName = "tokenizer_config.json";

    /// <summary>Loads <c>DIR/tiktoken.model</c> and <c>DIR/tokenizer_config.json</c> (both required), as written by <see cref="Save"/>.</summary>
    public static BpeTokenizer Load(string directory)
    {
        string config = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(config))
        {
            throw new K2Exception($"{directory}: no {ConfigFileName} (a tokenizer directory holds {RankFileName} and {ConfigFileName})");
        }

        return LoadFiles(Path.Combine(directory, RankFileName), config);
    }

    /// <summary>
    /// Loads a rank file made anywhere, with its specials from <paramref name="specialsJson"/>: our layout
    /// (<c>"special_tokens": {"text": id}</c>) or Hugging Face's (<c>"added_tokens_decoder": {"id": {"content": "text"}}</c>).
    /// Without one, <see cref="SpecialTokens.All"/> are appended after the ranks. Every problem is a
    /// <see cref="CorruptFileException"/> naming the file and the line or key.
    /// </summary>
    public static BpeTokenizer LoadFiles(string rankFile, string? specialsJson)
    {
        var ranks = ReadRankFile(rankFile);
        if (specialsJson is null)
        {
            return new BpeTokenizer(ranks, DefaultSpecials(ranks.Length), PreTokenizer.DefaultPattern);
        }

        var (specials, pattern) = ReadConfig(specialsJson, ranks.Length);
        return new BpeTokenizer(ranks, specials, pattern);
    }

    /// <summary>Writes <c>DIR/tiktoken.model</c> and <c>DIR/tokenizer_config.json</c>, creating the directory.</summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        var text = new StringBuilder(ranks.Length * 16);
        for (int rank = 0; rank < ranks.Length; rank++)
        {
            text.Append(Convert.ToBase64String(ranks[rank])).Append(' ').Append(rank.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }

        File.WriteAllText(Path.Combine(directory, RankFileName), text.ToString(), new UTF8Encoding(false));
        using var stream = File.Create(Path.Combine(directory, ConfigFileName));
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        json.WriteStartObject();
        json.WriteString("tokenizer_type", "tiktoken_bpe");
        json.WriteString("rank_file", RankFileName);
        json.WriteNumber("num_base_tokens", ranks.Length);
        json.WriteNumber("vocab_size", VocabSize);
        json.WriteString("pattern", Pattern);
        json.WriteBoolean("split_digits", SplitsDigits);
        json.WriteStartObject("special_tokens");
        foreach (var (token, id) in specialIds.OrderBy(p => p.Value))
        {
            json.WriteNumber(token, id);
        }

        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>
    /// One token per line, <c>base64(bytes) SP rank</c>, ranks 0, 1, 2, ... in file order; blank lines are
    /// skipped (as tiktoken does). All 256 single bytes must be present.
    /// </summary>
    private static byte[][] ReadRankFile(string path)
    {
        if (!File.Exists(path))
        {
            throw new K2Exception($"{path}: no such rank file");
        }

        var ranks = new List<byte[]>();
        var lineOf = new Dictionary<byte[], int>(ByteArrayComparer.Instance);
        int lineNumber = 0;
        foreach (string raw in File.ReadLines(path))
        {
            lineNumber++;
            string line = raw.TrimEnd('\r');
            if (line.Length == 0)
            {
                continue;
            }

            string Where() => $"line {lineNumber}";
            int space = line.IndexOf(' ');
            if (space < 0 || line.IndexOf(' ', space + 1) >= 0)
            {
                throw new CorruptFileException(path, $"{Where()}: expected '<base64 token> <rank>', got '{Clip(line)}'");
            }

            string encoded = line[..space], rankText = line[(space + 1)..];
            var buffer = new byte[encoded.Length];
            if (encoded.Length == 0 || !Convert.TryFromBase64String(encoded, buffer, out int length) || length == 0)
            {
                throw new CorruptFileException(path, $"{Where()}: '{Clip(encoded)}' is not the base64 of a non-empty token");
            }

            if (!int.TryParse(rankText, NumberStyles.None, CultureInfo.InvariantCulture, out int rank))
            {
                throw new CorruptFileException(path, $"{Where()}: rank '{Clip(rankText)}' is not a non-negative integer");
            }

            if (rank != ranks.Count)
            {
                string what = rank < ranks.Count
                    ? $"duplicate rank {rank} (ranks must be 0, 1, 2, ... in file order)"
                    : $"rank {rank} leaves a gap: expected rank {ranks.Count} (ranks must be 0, 1, 2, ... in file order)";
                throw new CorruptFileException(path, $"{Where()}: {what}");
            }

            var token = buffer[..length];
            if (!lineOf.TryAdd(token, lineNumber))
            {
                throw new CorruptFileException(path, $"{Where()}: duplicate token '{encoded}' (first on line {lineOf[token]})");
            }

            ranks.Add(token);
        }

        if (ranks.Count == 0)
        {
            throw new CorruptFileException(path, "no tokens");
        }

        for (int b = 0; b < 256; b++)
        {
            if (!lineOf.ContainsKey([(byte)b]))
            {
                throw new CorruptFileException(path, $"the single byte 0x{b:X2} has no token (all 256 bytes must be tokens)");
            }
        }

        return [.. ranks];
    }

    private static (List<KeyValuePair<string, int>> Specials, string Pattern) ReadConfig(string path, int rankCount)
    {
        if (!File.Exists(path))
        {
            throw new K2Exception($"{path}: no such special-tokens file");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowDuplicateProperties = false });
        }
        catch (JsonException e)
        {
            throw new CorruptFileException(path, $"line {e.LineNumber + 1}: not valid JSON: {e.Message}");
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new CorruptFileException(path, "expected a JSON object");
            }

            var specials = new List<KeyValuePair<string, int>>();
            if (root.TryGetProperty("special_tokens", out var ours) && ours.ValueKind == JsonValueKind.Object)
            {
                foreach (var p in ours.EnumerateObject())
                {
                    if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id))
                    {
                        throw new CorruptFileException(path, $"special_tokens.{p.Name}: the id must be an integer, got {p.Value.GetRawText()}");
                    }

                    specials.Add(KeyValuePair.Create(p.Name, id));
                }
            }
            else if (root.TryGetProperty("added_tokens_decoder", out var hf) && hf.ValueKind == JsonValueKind.Object)
            {
                foreach (var p in hf.EnumerateObject())
                {
                    if (!int.TryParse(p.Name, NumberStyles.None, CultureInfo.InvariantCulture, out int id)
                        || p.Value.ValueKind != JsonValueKind.Object
                        || !p.Value.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                    {
                        throw new CorruptFileException(path, $"added_tokens_decoder.{p.Name}: expected an integer id with {{\"content\": \"...\"}}");
                    }

                    specials.Add(KeyValuePair.Create(content.GetString()!, id));
                }
            }
            else
            {
                throw new CorruptFileException(path, "has no 'special_tokens' object (nor Hugging Face's 'added_tokens_decoder')");
            }

            var seenIds = new Dictionary<int, string>();
            var seenTokens = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (token, id) in specials)
            {
                if (token.Length == 0)
                {
                    throw new CorruptFileException(path, $"special token with id {id} has empty text");
                }

                if (id < rankCount)
                {
                    throw new CorruptFileException(path, $"special token '{token}' has id {id}, but ids below {rankCount} are ranks of the rank file");
                }

                if (id - (long)rankCount >= MaxSpecialIdGap)
                {
                    throw new CorruptFileException(path,
                        $"special token '{token}' has id {id}, more than {MaxSpecialIdGap} past the {rankCount} ranks (ids index the embedding)");
                }

                if (!seenIds.TryAdd(id, token))
                {
                    throw new CorruptFileException(path, $"special tokens '{seenIds[id]}' and '{token}' share id {id}");
                }

                if (!seenTokens.Add(token))
                {
                    throw new CorruptFileException(path, $"special token '{token}' appears twice");
                }
            }

            if (root.TryGetProperty("num_base_tokens", out var baseTokens)
                && (baseTokens.ValueKind != JsonValueKind.Number || !baseTokens.TryGetInt32(out int declared) || declared != rankCount))
            {
                throw new CorruptFileException(path, $"num_base_tokens is {baseTokens.GetRawText()} but the rank file has {rankCount} ranks");
            }

            bool? splitDigits = null;
            if (root.TryGetProperty("split_digits", out var splitElement))
            {
                splitDigits = splitElement.ValueKind is JsonValueKind.True or JsonValueKind.False
                    ? splitElement.GetBoolean()
                    : throw new CorruptFileException(path, $"split_digits: expected true or false, got {splitElement.GetRawText()}");
            }

            string pattern = PreTokenizer.Pattern(splitDigits ?? false);
            if (root.TryGetProperty("pattern", out var patternElement))
            {
                pattern = patternElement.ValueKind == JsonValueKind.String
                    ? patternElement.GetString()!
                    : throw new CorruptFileException(path, "pattern: expected a string");
                try
                {
                    _ = new Regex(pattern, RegexOptions.CultureInvariant);
                }
                catch (ArgumentException e)
                {
                    throw new CorruptFileException(path, $"pattern: not a valid .NET regex: {e.Message}");
                }

                if (pattern is not (PreTokenizer.DefaultPattern or PreTokenizer.SplitDigitsPattern)
                    && PreTokenizer.FindCatastrophicBacktracking(pattern) is { } probe)
                {
                    throw new CorruptFileException(path, $"pattern: backtracks catastrophically (it did not split {probe} in 250 ms); "
                        + "a pre-tokenizer pattern must not nest quantifiers over overlapping classes");
                }

                if (splitDigits is { } split && split != (pattern == PreTokenizer.SplitDigitsPattern))
                {
                    throw new CorruptFileException(path, split
                        ? "split_digits is true but the pattern is not the digit-splitting one (PreTokenizer.SplitDigitsPattern)"
                        : "split_digits is false but the pattern is the digit-splitting one");
                }
            }

            return (specials, pattern);
        }
    }

    private static string Clip(string text) => text.Length <= 40 ? text : text[..40] + "...";
}
