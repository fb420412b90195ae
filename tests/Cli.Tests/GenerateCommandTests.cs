using K2RL.Common.Chat;
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
        Assert.Equal(ChatPrompt("Hello"), doc.RootElement.GetProperty("prompt_tokens").EnumerateArray().Select(e => e.GetInt32()));
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

    /// <summary>The checkpoint's tokenizer's ids for TEXT as a user turn followed by the assistant header.</summary>
    private int[] ChatPrompt(string text) =>
        ChatEncoder.Encode(ModelCheckpoint.Load(dir).Tokenizer!, [Message.UserText(text)], addGenerationPrompt: true);

    /// <summary>
    /// By default the prompt goes in as a chat turn: user header, the text, end of turn, assistant header, so the
    /// model is asked for a reply as in training; --raw feeds the text's own ids, nothing around them.
    /// </summary>
    [Fact]
    public async Task ThePromptIsAUserTurnUnlessRaw()
    {
        var tokenizer = ModelCheckpoint.Load(dir).Tokenizer!;
        async Task<int[]> PromptTokens(params string[] extra)
        {
            var (code, json, err) = await Run(["generate", "--checkpoint", dir, "--prompt", "What is 12 + 34?", "--max-tokens", "1", "--seed", "1", "--json", .. extra]);
            Assert.True(code == 0, err);
            using var doc = JsonDocument.Parse(json);
            return doc.RootElement.GetProperty("prompt_tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        }

        int[] chat = await PromptTokens();
        int[] text = tokenizer.Encode("What is 12 + 34?", allowSpecial: false);
        int[] header = [tokenizer.SpecialTokenId("<|im_user|>"), .. tokenizer.Encode("user", allowSpecial: false), tokenizer.SpecialTokenId("<|im_middle|>")];
        int[] reply = [tokenizer.SpecialTokenId("<|im_end|>"), tokenizer.SpecialTokenId("<|im_assistant|>"),
            .. tokenizer.Encode("assistant", allowSpecial: false), tokenizer.SpecialTokenId("<|im_middle|>")];
        Assert.Equal([.. header, .. text, .. reply], chat);
        Assert.Equal(ChatPrompt("What is 12 + 34?"), chat);
        Assert.Equal(text, await PromptTokens("--raw"));
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
        Assert.Contains("does not exist", err2);
    }

    /// <summary>
    /// --weights bf16 rounds the checkpoint's weights for the engine: the greedy tokens and their log-probabilities
    /// are exactly those of an f32 engine given a checkpoint of the rounded weights (written as bf16, which stores exactly those values); an unknown
    /// precision is an error naming it, before any work.
    /// </summary>
    [Fact]
    public async Task Bf16WeightsGenerateWhatTheRoundedCheckpointGenerates()
    {
        var roundedDir = dir + "-bf16";
        var (saveCode, _, saveErr) = await Run("model", "init", "--config", ModelCommandInfoTests.Preset("k2-nano"), "--seed", "3",
            "--dtype", "bf16", "--out", roundedDir);
        try
        {
            Assert.True(saveCode == 0, saveErr);
            // the sampled tokens and their log-probabilities, as printed
            async Task<string> Sample(string checkpointDir, string weights)
            {
                var (code, json, err) = await Run("generate", "--checkpoint", checkpointDir, "--prompt", "Hello", "--max-tokens", "16",
                    "--temperature", "0", "--weights", weights, "--json");
                Assert.True(code == 0, err);
                using var doc = JsonDocument.Parse(json);
                var sample = doc.RootElement.GetProperty("samples")[0];
                return sample.GetProperty("tokens").GetRawText() + " " + sample.GetProperty("logprobs").GetRawText();
            }

            string rounded = await Sample(roundedDir, "f32");
            // rounding moves this checkpoint's log-probabilities, so the next check sees whether --weights is honoured
            Assert.NotEqual(await Sample(dir, "f32"), rounded);
            Assert.Equal(rounded, await Sample(dir, "bf16"));
            Assert.Equal(rounded, await Sample(roundedDir, "bf16"));

            var (bad, output, badErr) = await Run("generate", "--checkpoint", dir, "--prompt", "Hi", "--weights", "fp8");
            Assert.Equal(1, bad);
            Assert.Equal("", output);
            Assert.Contains("unknown weight precision \"fp8\"", badErr);
        }
        finally
        {
            if (Directory.Exists(roundedDir))
            {
                Directory.Delete(roundedDir, recursive: true);
            }
        }
    }
}
