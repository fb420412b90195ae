using System.Text.Json;
using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Model.Tokenization;

namespace K2RL.Cli.Tests;

public sealed class GenerateCommandTests : IDisposable
{
    private readonly RandomCheckpoint checkpoint =
        new(ModelConfig.Load(ModelCommandInfoTests.Preset("k2-nano")), seed: 3, prefix: "k2rl-gen-");

    private string dir => checkpoint.Dir;

    public void Dispose() => checkpoint.Dispose();

    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => ModelCommandInfoTests.Run(args);

    [Fact]
    public async Task JsonGivesTokensLogProbsAndTheTextTheStreamPrints()
    {
        var (code, json, _) = await Run("generate", "--checkpoint", dir, "--prompt", "Hello", "--max-tokens", "12", "--seed", "7", "--n", "2", "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(json);
        var samples = doc.RootElement.GetProperty("samples").EnumerateArray().ToList();
        Assert.Equal(2, samples.Count);
        Assert.Equal(BpeTokenizer.ByteLevel().Encode("Hello"), doc.RootElement.GetProperty("prompt_tokens").EnumerateArray().Select(e => e.GetInt32()));
        foreach (var s in samples)
        {
            var tokens = s.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.InRange(tokens.Length, 1, 12);
            Assert.All(s.GetProperty("logprobs").EnumerateArray(), e => Assert.True(e.GetSingle() <= 0));
            Assert.Equal(tokens.Length == 12, s.GetProperty("truncated").GetBoolean());
        }

        Assert.Equal(7UL, samples[0].GetProperty("seed").GetUInt64());
        Assert.Equal(8UL, samples[1].GetProperty("seed").GetUInt64());

        var (code2, text, err) = await Run("generate", "--checkpoint", dir, "--prompt", "Hello", "--max-tokens", "12", "--seed", "7");
        Assert.Equal(0, code2);
        Assert.Equal(samples[0].GetProperty("text").GetString() + Environment.NewLine, text);
        Assert.Contains("seed 7", err);
    }

    [Fact]
    public async Task BadSamplingParametersAreAClearError()
    {
        var (code, output, err) = await Run("generate", "--checkpoint", dir, "--prompt", "Hi", "--top-p", "1.5");
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Contains("top_p must be in (0, 1]", err);
        var (code2, _, err2) = await Run("generate", "--checkpoint", Path.Combine(dir, "missing"), "--prompt", "Hi");
        Assert.Equal(1, code2);
        Assert.Contains("not found", err2);
    }
}
