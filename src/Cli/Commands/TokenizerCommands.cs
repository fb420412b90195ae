using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using K2RL.Common;
using K2RL.Model.Tokenization;

namespace K2RL.Cli.Commands;

/// <summary><c>k2rl tokenizer train|encode|decode</c>: thin wrappers over <see cref="BpeTokenizer"/>.</summary>
public sealed class TokenizerCommands : ICommandProvider
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public string Group => "tokenizer";

    public IEnumerable<Command> Build(CliContext context)
    {
        yield return TrainCommand(context);
        yield return EncodeCommand(context);
        yield return DecodeCommand(context);
    }

    internal sealed record TrainOptions(string[] Inputs, int Vocab, string Out, bool Json);

    internal sealed record EncodeOptions(string? Tokenizer, string Text, bool NoSpecial, bool Json);

    internal sealed record DecodeOptions(string? Tokenizer, string Ids, bool Json);

    private static Command TrainCommand(CliContext context)
    {
        var input = new Option<string[]>("--input") { Description = "Corpus files (UTF-8 text; each file is one document)", Required = true, AllowMultipleArgumentsPerToken = true };
        var vocab = new Option<int>("--vocab") { Description = "Target vocabulary size, specials included (at least 256 + specials)", Required = true };
        var output = new Option<string>("--out") { Description = "Directory for tiktoken.model and tokenizer_config.json", Required = true };
        var json = JsonOption();
        var command = new Command("train", "Train a byte-level BPE tokenizer on text files") { input, vocab, output, json };
        command.SetAction(parse => Train(context, new TrainOptions(parse.GetValue(input)!, parse.GetValue(vocab), parse.GetValue(output)!, parse.GetValue(json))));
        return command;
    }

    private static Command EncodeCommand(CliContext context)
    {
        var tokenizer = TokenizerOption();
        var text = new Option<string>("--text") { Description = "Text to encode", Required = true };
        var noSpecial = new Option<bool>("--no-special") { Description = "Encode special-token text as ordinary text" };
        var json = JsonOption();
        var command = new Command("encode", "Encode text to token ids") { tokenizer, text, noSpecial, json };
        command.SetAction(parse => Encode(context, new EncodeOptions(parse.GetValue(tokenizer), parse.GetValue(text)!, parse.GetValue(noSpecial), parse.GetValue(json))));
        return command;
    }

    private static Command DecodeCommand(CliContext context)
    {
        var tokenizer = TokenizerOption();
        var ids = new Option<string>("--ids") { Description = "Comma-separated token ids, e.g. 1,2,3", Required = true };
        var json = JsonOption();
        var command = new Command("decode", "Decode token ids to text") { tokenizer, ids, json };
        command.SetAction(parse => Decode(context, new DecodeOptions(parse.GetValue(tokenizer), parse.GetValue(ids)!, parse.GetValue(json))));
        return command;
    }

    private static Option<string?> TokenizerOption() =>
        new("--tokenizer") { Description = "Tokenizer directory (tiktoken.model + tokenizer_config.json); default: the byte-level tokenizer" };

    private static Option<bool> JsonOption() => new("--json") { Description = "Print one JSON object on stdout" };

    internal static int Train(CliContext context, TrainOptions options)
    {
        foreach (var file in options.Inputs)
        {
            if (!File.Exists(file))
            {
                throw new K2Exception($"{file}: no such input file");
            }
        }

        if (options.Vocab < 256 + SpecialTokens.All.Count)
        {
            throw new K2Exception($"--vocab {options.Vocab}: at least {256 + SpecialTokens.All.Count} (256 bytes + {SpecialTokens.All.Count} specials)");
        }

        var clock = Stopwatch.StartNew();
        var documents = options.Inputs.Select(File.ReadAllText).ToList();
        var tokenizer = BpeTokenizer.Train(documents, options.Vocab, log: line => context.Error.WriteLine(line));
        double seconds = clock.Elapsed.TotalSeconds;
        tokenizer.Save(options.Out);

        long bytes = 0, tokens = 0;
        foreach (var document in documents)
        {
            bytes += System.Text.Encoding.UTF8.GetByteCount(document);
            tokens += tokenizer.Encode(document, allowSpecial: false).Length;
        }

        var result = new
        {
            Out = options.Out,
            VocabSize = tokenizer.VocabSize,
            Ranks = tokenizer.RankCount,
            SpecialTokens = tokenizer.SpecialTokenIds.Count,
            CorpusBytes = bytes,
            CorpusTokens = tokens,
            BytesPerToken = tokens == 0 ? 0 : Math.Round((double)bytes / tokens, 3),
            TrainSeconds = Math.Round(seconds, 3),
        };
        context.Out.WriteLine(options.Json
            ? JsonSerializer.Serialize(result, Json)
            : $"wrote {options.Out}: vocab {result.VocabSize} ({result.Ranks} ranks + {result.SpecialTokens} specials), " +
              $"{result.BytesPerToken} bytes/token on the corpus, trained in {result.TrainSeconds} s");
        return 0;
    }

    internal static int Encode(CliContext context, EncodeOptions options)
    {
        var ids = Open(options.Tokenizer).Encode(options.Text, allowSpecial: !options.NoSpecial);
        context.Out.WriteLine(options.Json
            ? JsonSerializer.Serialize(new { Ids = ids }, Json)
            : string.Join(',', ids));
        return 0;
    }

    internal static int Decode(CliContext context, DecodeOptions options)
    {
        var ids = new List<int>();
        foreach (var item in options.Ids.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            ids.Add(int.TryParse(item, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int id)
                ? id
                : throw new K2Exception($"--ids: '{item}' is not an integer token id"));
        }

        string text;
        try
        {
            text = Open(options.Tokenizer).Decode(ids.ToArray());
        }
        catch (ArgumentException e)
        {
            throw new K2Exception($"--ids: {e.Message.Split(" (Parameter")[0]}");
        }

        context.Out.WriteLine(options.Json ? JsonSerializer.Serialize(new { Text = text }, Json) : text);
        return 0;
    }

    private static BpeTokenizer Open(string? directory)
    {
        if (directory is null)
        {
            return BpeTokenizer.ByteLevel();
        }

        return Directory.Exists(directory)
            ? BpeTokenizer.Load(directory)
            : throw new K2Exception($"{directory}: no such tokenizer directory");
    }
}
