using System.Text;

namespace K2RL.Model.Tests.Tokenization;

/// <summary>Deterministic corpora and byte strings for the tokenizer tests, and a temp directory.</summary>
internal static class TokenizerTestData
{
    private static readonly string[] Syllables =
        ["ka", "mi", "to", "re", "su", "na", "lo", "be", "the", "ing", "tion", "and", "er", "qu", "ö", "ß", "中", "文", "ré", "é"];

    /// <summary>Zipf-ish sentences over a fixed word list: words, punctuation, numbers, newlines.</summary>
    public static string Corpus(int seed, int words)
    {
        var rng = new Random(seed);
        var lexicon = new string[300];
        var build = new Random(12345); // the lexicon is the same for every seed
        for (int i = 0; i < lexicon.Length; i++)
        {
            var word = new StringBuilder();
            int n = 1 + build.Next(4);
            for (int s = 0; s < n; s++)
            {
                word.Append(Syllables[build.Next(Syllables.Length)]);
            }

            lexicon[i] = word.ToString();
        }

        var text = new StringBuilder();
        for (int i = 0; i < words; i++)
        {
            int rank = (int)(lexicon.Length * Math.Pow(rng.NextDouble(), 3)); // frequent words first
            string word = lexicon[rank];
            if (rng.Next(12) == 0)
            {
                word = char.ToUpperInvariant(word[0]) + word[1..];
            }

            text.Append(word);
            int r = rng.Next(40);
            text.Append(r switch { 0 => ". ", 1 => ", ", 2 => "\n", 3 => $" {rng.Next(2000)} ", 4 => "'s ", _ => " " });
        }

        return text.ToString();
    }

    /// <summary>Random code points of every UTF-8 length: ASCII, Latin, combining marks, CJK, emoji.</summary>
    public static string RandomText(Random rng, int codePoints)
    {
        var text = new StringBuilder();
        for (int i = 0; i < codePoints; i++)
        {
            int cp = rng.Next(8) switch
            {
                0 or 1 or 2 => rng.Next(0x20, 0x7F),
                3 => " \n\t\r"[rng.Next(4)],
                4 => rng.Next(0xA0, 0x800),
                5 => rng.Next(0x4E00, 0x9FFF),
                6 => rng.Next(0x1F300, 0x1FAFF),
                _ => rng.Next(0x300, 0x370),
            };
            text.Append(char.ConvertFromUtf32(cp));
        }

        return text.ToString();
    }

    /// <summary>UTF-8 of random text with invalid sequences spliced in: stray continuation bytes, 0xFF, truncated
    /// and overlong sequences, encoded surrogates.</summary>
    public static byte[] Utf8WithInvalid(Random rng, int pieces)
    {
        byte[][] invalid =
        [
            [0x80], [0xBF], [0xFF], [0xFE], [0xC0, 0x80], [0xE4, 0xB8], [0xF0, 0x9F, 0x98], [0xED, 0xA0, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80],
            [0xC3], [0xE2, 0x82],
        ];
        var bytes = new List<byte>();
        for (int i = 0; i < pieces; i++)
        {
            if (rng.Next(3) == 0)
            {
                bytes.AddRange(invalid[rng.Next(invalid.Length)]);
            }
            else
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(RandomText(rng, 1 + rng.Next(6))));
            }
        }

        return [.. bytes];
    }

    public static byte[] RandomBytes(Random rng, int length)
    {
        var bytes = new byte[length];
        rng.NextBytes(bytes);
        return bytes;
    }
}

/// <summary>A fresh directory under the system temp folder, deleted on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "k2rl-tok-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name, string contents)
    {
        string path = System.IO.Path.Combine(Path, name);
        System.IO.File.WriteAllText(path, contents);
        return path;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
