using System.Text.Json;
using K2RL.Cli;

namespace K2RL.Cli.Tests;

public class TokenizerCommandTests : IDisposable
{
    private readonly string dir = Path.Combine(Path.GetTempPath(), "k2rl-tokcli-" + Guid.NewGuid().ToString("N"));

    public TokenizerCommandTests() => Directory.CreateDirectory(dir);

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = await CliApp.RunAsync(args, new CliContext(output, error));
        return (code, output.ToString(), error.ToString());
    }

    private string Corpus()
    {
        string path = Path.Combine(dir, "corpus.txt");
        var words = new[] { "the", "model", "learns", "tokens", "quickly", "and", "well", "rewards", "policy" };
        var rng = new Random(1);
        File.WriteAllText(path, string.Join(' ', Enumerable.Range(0, 20_000).Select(_ => words[rng.Next(words.Length)])));
        return path;
    }

    [Fact]
    public async Task TrainEncodeDecodeRoundTrip()
    {
        string tokenizer = Path.Combine(dir, "tok");
        var train = await Run("tokenizer", "train", "--input", Corpus(), "--vocab", "400", "--out", tokenizer, "--json");
        Assert.True(train.Code == 0, train.Err);
        int vocab;
        using (var summary = JsonDocument.Parse(train.Out))
        {
            // Nine distinct words run out of pairs before 400: every word becomes one token.
            vocab = summary.RootElement.GetProperty("vocab_size").GetInt32();
            Assert.InRange(vocab, 256 + 11 + 9, 399);
            Assert.Equal(vocab - 11, summary.RootElement.GetProperty("ranks").GetInt32());
            Assert.True(summary.RootElement.GetProperty("bytes_per_token").GetDouble() > 2);
        }

        Assert.True(File.Exists(Path.Combine(tokenizer, "tiktoken.model")));
        Assert.Contains("merges", train.Err); // progress goes to stderr

        var encode = await Run("tokenizer", "encode", "--tokenizer", tokenizer, "--text", "the policy learns<|im_end|>", "--json");
        Assert.Equal(0, encode.Code);
        using var encoded = JsonDocument.Parse(encode.Out);
        var ids = encoded.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.True(ids.Length <= 5, string.Join(',', ids)); // "t" "he" (no leading space), " policy", " learns", <|im_end|>
        Assert.Equal(vocab - 11 + 4, ids[^1]); // after the ranks: im_system, im_user, im_assistant, im_middle, im_end

        var decode = await Run("tokenizer", "decode", "--tokenizer", tokenizer, "--ids", string.Join(',', ids), "--json");
        Assert.Equal(0, decode.Code);
        using var decoded = JsonDocument.Parse(decode.Out);
        Assert.Equal("the policy learns<|im_end|>", decoded.RootElement.GetProperty("text").GetString());
    }

    [Fact]
    public async Task DefaultIsTheByteLevelTokenizer()
    {
        var encode = await Run("tokenizer", "encode", "--text", "Hi<|im_user|>");
        Assert.Equal(0, encode.Code);
        Assert.Equal("72,105,257", encode.Out.Trim());
        var plain = await Run("tokenizer", "encode", "--text", "<|im_user|>", "--no-special");
        Assert.Equal(11, plain.Out.Trim().Split(',').Length);
        var decode = await Run("tokenizer", "decode", "--ids", "72, 105,257");
        Assert.Equal("Hi<|im_user|>", decode.Out.TrimEnd('\n', '\r'));
    }

    [Fact]
    public async Task JsonOutputIsExactlyOneObject()
    {
        var decode = await Run("tokenizer", "decode", "--ids", "34,10", "--json");
        using var json = JsonDocument.Parse(decode.Out);
        Assert.Equal("\"\n", json.RootElement.GetProperty("text").GetString());
        Assert.Single(json.RootElement.EnumerateObject());
    }

    [Fact]
    public async Task BadInputGivesOneLineErrorsNamingTheProblem()
    {
        var outside = await Run("tokenizer", "decode", "--ids", "1,9999");
        Assert.Equal(1, outside.Code);
        Assert.Contains("9999", outside.Err);
        Assert.Equal("", outside.Out);

        var notNumber = await Run("tokenizer", "decode", "--ids", "1,x");
        Assert.Equal(1, notNumber.Code);
        Assert.Contains("'x'", notNumber.Err);

        var missing = await Run("tokenizer", "encode", "--tokenizer", Path.Combine(dir, "none"), "--text", "a");
        Assert.Equal(1, missing.Code);
        Assert.Contains("none", missing.Err);

        string corrupt = Path.Combine(dir, "corrupt");
        Directory.CreateDirectory(corrupt);
        File.WriteAllText(Path.Combine(corrupt, "tiktoken.model"), "AA== 0\nnot-base64 1\n");
        File.WriteAllText(Path.Combine(corrupt, "tokenizer_config.json"), "{\"special_tokens\": {}}");
        var bad = await Run("tokenizer", "encode", "--tokenizer", corrupt, "--text", "a");
        Assert.Equal(1, bad.Code);
        Assert.Contains("tiktoken.model: line 2:", bad.Err);

        var small = await Run("tokenizer", "train", "--input", Corpus(), "--vocab", "100", "--out", Path.Combine(dir, "small"));
        Assert.Equal(1, small.Code);
        Assert.Contains("267", small.Err);

        var noInput = await Run("tokenizer", "train", "--input", Path.Combine(dir, "absent.txt"), "--vocab", "300", "--out", Path.Combine(dir, "x"));
        Assert.Equal(1, noInput.Code);
        Assert.Contains("absent.txt", noInput.Err);
    }
}
