using K2RL.Common;
using K2RL.Common.Chat;
using K2RL.Model;
using K2RL.Model.Inference;
using K2RL.Model.IO;
using K2RL.Model.Tokenization;

namespace K2RL.Rollout;

/// <summary>What <c>k2rl generate</c> asks for.</summary>
public sealed record GenerateOptions
{
    public required string Checkpoint { get; init; }

    public required string Prompt { get; init; }

    /// <summary>
    /// False (the default): the prompt is one user message followed by the assistant header, through the
    /// tokenizer's chat format, the layout the models are trained on. True: the prompt's text is fed as it is.
    /// </summary>
    public bool Raw { get; init; }

    public float Temperature { get; init; } = 1f;

    public float TopP { get; init; } = 1f;

    public int TopK { get; init; }

    public int MaxTokens { get; init; } = 128;

    /// <summary>Samples of the same prompt, generated together (sample i uses seed + i).</summary>
    public int N { get; init; } = 1;

    public ulong? Seed { get; init; }

    /// <summary>The values the engine holds the weights at (f32: as trained; bf16: rounded, half the expert bytes per decode step).</summary>
    public WeightPrecision Weights { get; init; } = WeightPrecision.F32;
}

public sealed record GeneratedSample(int Index, string Text, GenerationResult Result);

public sealed record GenerateOutput(int[] PromptTokens, IReadOnlyList<GeneratedSample> Samples);

/// <summary>Loads a checkpoint directory (weights, config, tokenizer) and generates from a text prompt with the rollout engine.</summary>
public static class CheckpointGeneration
{
    /// <summary>
    /// A checkpoint directory's model on a rollout engine with room for <paramref name="maxBatch"/> sequences: the
    /// weights and config, the directory's tokenizer (or the byte-level one when it holds none), checked to fit the
    /// vocabulary; ids past the tokenizer's are never sampled.
    /// </summary>
    public static (ModelConfig Config, BpeTokenizer Tokenizer, RolloutEngine Engine) LoadEngine(string dir, int maxBatch,
        WeightPrecision weights = WeightPrecision.F32, Action<string>? warn = null)
    {
        var checkpoint = ModelCheckpoint.Load(dir, warn: warn);
        dir = checkpoint.Directory;
        var tokenizer = checkpoint.Tokenizer ?? BpeTokenizer.ByteLevel();
        ModelCheckpoint.CheckTokenizerFits(tokenizer, checkpoint.Config,
            checkpoint.Tokenizer is null ? $"{dir} holds no tokenizer, and the byte-level fallback" : "the checkpoint's tokenizer");
        var decoder = new ModelDecoder(checkpoint.Config, maxBatch, precision: weights);
        decoder.LoadWeights(checkpoint.Parameters);
        var engine = new RolloutEngine(decoder, new EngineOptions
        {
            Detokenize = ids => tokenizer.Decode(ids.ToArray()),
            SampleableVocab = tokenizer.VocabSize,
        });
        return (checkpoint.Config, tokenizer, engine);
    }

    /// <summary>
    /// The ids <c>k2rl generate</c> feeds: the text as one user turn plus the generation prompt
    /// (<c>&lt;|im_user|&gt;user&lt;|im_middle|&gt;TEXT&lt;|im_end|&gt;&lt;|im_assistant|&gt;assistant&lt;|im_middle|&gt;</c>), or with
    /// <paramref name="raw"/> the text alone.
    /// </summary>
    public static int[] PromptTokens(BpeTokenizer tokenizer, string prompt, bool raw) =>
        raw ? tokenizer.Encode(prompt) : ChatEncoder.Encode(tokenizer, [Message.UserText(prompt)], addGenerationPrompt: true);

    /// <param name="onText">receives sample 0's text as it is generated.</param>
    public static GenerateOutput Run(GenerateOptions o, Action<string>? onText = null)
    {
        if (o.N < 1)
        {
            throw new ConfigException($"--n must be >= 1, got {o.N}");
        }

        var (_, tokenizer, engine) = LoadEngine(o.Checkpoint, maxBatch: o.N, o.Weights);
        string Detokenize(IReadOnlyList<int> ids) => tokenizer.Decode(ids.ToArray());
        int[] prompt = PromptTokens(tokenizer, o.Prompt, o.Raw);
        var stops = EnginePolicy.StopTokens(tokenizer);
        ulong seed = o.Seed ?? (ulong)Random.Shared.NextInt64();
        var handles = new List<RequestHandle>();
        var streamer = new TextStreamer(Detokenize);
        for (int i = 0; i < o.N; i++)
        {
            var sampling = new SamplingParams
            {
                Temperature = o.Temperature,
                TopP = o.TopP,
                TopK = o.TopK,
                MaxTokens = o.MaxTokens,
                Seed = seed + (ulong)i,
                StopTokens = stops,
            };
            if (engine.Problem(new GenerationRequest("check", prompt, sampling)) is { } problem)
            {
                throw new ConfigException(problem);
            }

            Action<SampledToken>? onToken = i == 0 && onText is not null ? t => onText(streamer.Push(t.Token)) : null;
            handles.Add(engine.Submit(new GenerationRequest($"sample-{i}", prompt, sampling), onToken));
        }

        engine.RunUntilIdle();
        if (onText is not null)
        {
            onText(streamer.Flush());
        }

        var samples = handles.Select((h, i) =>
        {
            var r = h.Result!;
            if (r.FinishReason == FinishReason.Error)
            {
                throw new K2Exception($"sample {i} failed: {r.Error}");
            }

            return new GeneratedSample(i, Detokenize(r.TokenIds), r);
        }).ToList();
        return new GenerateOutput(prompt, samples);
    }
}
