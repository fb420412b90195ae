using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using K2RL.Common;
using K2RL.Model;
using K2RL.Model.IO;
using K2RL.Model.Tokenization;

namespace K2RL.Cli.Commands;

/// <summary>`k2rl model info | init | logits`: parameter accounting, new checkpoints, logits of a checkpoint.</summary>
public sealed class ModelCommands : ICommandProvider
{
    public string Group => "model";

    internal sealed record InfoOptions(string Config, int? Seq, bool Json);

    internal sealed record InitOptions(string Config, ulong Seed, string Out, string? Tokenizer, SafetensorsDType DType, bool Json);

    internal sealed record LogitsOptions(string Checkpoint, string Ids, bool Json);

    public IEnumerable<Command> Build(CliContext context)
    {
        yield return Info(context);
        yield return Init(context);
        yield return Logits(context);
    }

    private static Option<string> ConfigOption() => new("--config")
    {
        Description = "Model config (Hugging Face config.json keys), e.g. configs/models/k2-nano.json, or a checkpoint directory",
        Required = true,
    };

    private static Option<bool> JsonOption() => new("--json") { Description = "Print one JSON object on stdout" };

    private static void WriteJson(CliContext context, JsonObject json) =>
        context.Out.WriteLine(json.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));

    private static string N(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    // ------------------------------------------------------------------ info

    private static Command Info(CliContext context)
    {
        var config = ConfigOption();
        var seq = new Option<int?>("--seq")
        {
            Description = $"Sequence length for the attention FLOPs (default: min({ModelInfo.DefaultSequenceLength}, max_position_embeddings))",
        };
        var json = JsonOption();
        var command = new Command("info", "Parameters (total, activated), KV-cache bytes per token and training FLOPs per token of a config");
        command.Options.Add(config);
        command.Options.Add(seq);
        command.Options.Add(json);
        command.SetAction(r => RunInfo(context, new InfoOptions(r.GetValue(config)!, r.GetValue(seq), r.GetValue(json))));
        return command;
    }

    internal static int RunInfo(CliContext context, InfoOptions options)
    {
        // A checkpoint directory works too: its config.json describes the model.
        string path = Directory.Exists(options.Config) ? Path.Combine(options.Config, ModelCheckpoint.ConfigFile) : options.Config;
        var info = ModelInfo.Compute(ModelConfig.Load(path), options.Seq);
        if (options.Json)
        {
            WriteJson(context, InfoJson(info, options.Config));
        }
        else
        {
            WriteInfoTable(context.Out, info, options.Config);
        }

        return 0;
    }

    private static JsonObject InfoJson(ModelInfo info, string path)
    {
        var c = info.Config;
        return new JsonObject
        {
            ["config"] = path,
            ["model_type"] = c.ModelType,
            ["total_params"] = info.TotalParameters,
            ["activated_params"] = info.ActivatedParameters,
            ["activated_matmul_params"] = info.ActivatedMatmulParameters,
            ["kv_cache_bytes_per_token"] = new JsonObject
            {
                ["compressed"] = info.KvCacheBytesPerTokenCompressed,
                ["naive"] = info.KvCacheBytesPerTokenNaive,
                ["compressed_bf16"] = info.KvCacheBytesPerTokenCompressed / 2,
                ["naive_bf16"] = info.KvCacheBytesPerTokenNaive / 2,
                ["values_per_layer_compressed"] = info.KvValuesPerTokenPerLayerCompressed,
                ["values_per_layer_naive"] = info.KvValuesPerTokenPerLayerNaive,
                ["ratio"] = Math.Round(info.KvCacheRatio, 2),
            },
            ["flops_per_token"] = info.FlopsPerToken,
            ["flops_per_token_matmul"] = info.MatmulFlopsPerToken,
            ["flops_per_token_attention"] = info.AttentionFlopsPerToken,
            ["seq_len"] = info.SequenceLength,
            ["layers"] = info.Layers,
            ["moe_layers"] = info.MoeLayers,
        };
    }

    private static void WriteInfoTable(TextWriter o, ModelInfo info, string path)
    {
        var c = info.Config;
        int L = info.Layers, H = c.NumAttentionHeads;
        var rows = new List<(string, string)>
        {
            ("config", $"{path} ({c.ModelType})"),
            ("layers", $"{L} ({L - info.MoeLayers} dense, {info.MoeLayers} MoE: {c.NRoutedExperts} experts, {c.NumExpertsPerTok} per token, {c.NSharedExperts} shared)"),
            ("hidden / vocab", $"{c.HiddenSize} / {c.VocabSize}"),
            ("parameters, total", N(info.TotalParameters)),
            ("parameters, activated", $"{N(info.ActivatedParameters)} per token ({100.0 * info.ActivatedParameters / info.TotalParameters:F1}%)"),
            ("KV cache / token, MLA", $"{N(info.KvCacheBytesPerTokenCompressed)} B fp32, {N(info.KvCacheBytesPerTokenCompressed / 2)} B bf16"
                                       + $"  = {L} layers × (R {c.KvLoraRank} + Dr {c.QkRopeHeadDim}) × 4"),
            ("KV cache / token, naive", $"{N(info.KvCacheBytesPerTokenNaive)} B fp32, {N(info.KvCacheBytesPerTokenNaive / 2)} B bf16"
                                         + $"  = {L} × H {H} × (Dn {c.QkNopeHeadDim} + Dr {c.QkRopeHeadDim} + Dv {c.VHeadDim}) × 4"),
            ("KV cache ratio", $"{info.KvCacheRatio:F1}× smaller with MLA"),
            ("train FLOPs / token", $"{info.FlopsPerToken:0.000e+0} at seq {info.SequenceLength}"),
            ("  matmuls", $"{info.MatmulFlopsPerToken:0.000e+0}  = 6 × {N(info.ActivatedMatmulParameters)} activated matmul params (no embedding lookup, no norms)"),
            ("  attention", $"{info.AttentionFlopsPerToken:0.000e+0}  = 6 × {L} × {H} × ({c.Mla.QkHead} + {c.VHeadDim}) × {info.SequenceLength}"),
        };
        int width = rows.Max(r => r.Item1.Length);
        foreach (var (key, value) in rows)
        {
            o.WriteLine(key.PadRight(width + 2) + value);
        }
    }

    // ------------------------------------------------------------------ init

    private static Command Init(CliContext context)
    {
        var config = ConfigOption();
        var seed = new Option<ulong>("--seed") { Description = "Seed of the weight initialization (same seed, same weights)", Required = true };
        var output = new Option<string>("--out") { Description = "Checkpoint directory to write: model.safetensors, config.json, tokenizer files", Required = true };
        var tokenizer = new Option<string?>("--tokenizer")
        {
            Description = "Tokenizer directory or tiktoken rank file; default: byte-level with the special tokens (needs vocab_size >= 267)",
        };
        var dtype = new Option<string>("--dtype") { Description = "Stored weight dtype: f32 (default), bf16 or f16", DefaultValueFactory = _ => "f32" };
        var json = JsonOption();
        var command = new Command("init", "Write a freshly initialized checkpoint (Hugging Face layout) with its tokenizer")
        {
            config, seed, output, tokenizer, dtype, json,
        };
        command.SetAction(r => RunInit(context, new InitOptions(r.GetValue(config)!, r.GetValue(seed), r.GetValue(output)!,
            r.GetValue(tokenizer), SafetensorsDTypes.ParseOption(r.GetValue(dtype)!), r.GetValue(json))));
        return command;
    }

    internal static int RunInit(CliContext context, InitOptions options)
    {
        var config = ModelConfig.Load(options.Config);
        var (tokenizer, what) = ResolveTokenizer(options.Tokenizer);
        ModelCheckpoint.CheckTokenizerFits(tokenizer, config, what);
        var model = new K2Model(config);
        model.InitializeWeights(options.Seed);
        context.Error.WriteLine($"writing {options.Out} ({N(model.Layout.ParameterCount)} parameters as {options.DType.Name()})");
        ModelCheckpoint.Save(options.Out, config, model.Parameters, tokenizer, options.DType);

        string weights = Path.Combine(options.Out, ModelCheckpoint.WeightsFile);
        var result = new JsonObject
        {
            ["out"] = options.Out,
            ["seed"] = options.Seed,
            ["total_params"] = model.Layout.ParameterCount,
            ["dtype"] = options.DType.Name(),
            ["vocab_size"] = config.VocabSize,
            ["tokenizer_vocab_size"] = tokenizer.VocabSize,
            ["files"] = new JsonArray(Directory.GetFiles(options.Out)
                .Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).Select(f => (JsonNode?)f).ToArray()),
            ["model_safetensors_bytes"] = new FileInfo(weights).Length,
            ["model_safetensors_sha256"] = Checksums.Sha256File(weights),
        };
        if (options.Json)
        {
            WriteJson(context, result);
        }
        else
        {
            context.Out.WriteLine($"wrote {options.Out}: {N(model.Layout.ParameterCount)} parameters ({options.DType.Name()}), "
                                  + $"tokenizer {tokenizer.VocabSize} ids in a vocabulary of {config.VocabSize}, "
                                  + $"model.safetensors sha256 {result["model_safetensors_sha256"]}");
        }

        return 0;
    }

    // ------------------------------------------------------------------ logits

    private static Command Logits(CliContext context)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = CliContext.CheckpointHelp, Required = true };
        var ids = new Option<string>("--ids") { Description = "Comma-separated token ids, e.g. 1,2,3", Required = true };
        var json = JsonOption();
        var command = new Command("logits", "Run the model on token ids: logits per position and the max attention logit per layer and head")
        {
            checkpoint, ids, json,
        };
        command.SetAction(r => RunLogits(context, new LogitsOptions(r.GetValue(checkpoint)!, r.GetValue(ids)!, r.GetValue(json))));
        return command;
    }

    internal static int RunLogits(CliContext context, LogitsOptions options)
    {
        ParseIds(options.Ids, int.MaxValue);                                // syntax first, before loading any weights
        K2Model? model = null;
        var checkpoint = ModelCheckpoint.Load(options.Checkpoint, layout => (model = new K2Model(layout.Config)).Parameters);
        var config = checkpoint.Config;
        int[] tokens = ParseIds(options.Ids, config.VocabSize);
        if (tokens.Length > config.MaxPositionEmbeddings)
        {
            throw new K2Exception($"--ids: {tokens.Length} tokens exceed \"max_position_embeddings\" {config.MaxPositionEmbeddings}");
        }

        var targets = new int[tokens.Length];
        Array.Fill(targets, -1);                                            // no loss: logits only
        model!.Forward(tokens, targets, 1, tokens.Length);
        int T = tokens.Length, V = config.VocabSize, L = config.NumHiddenLayers, H = config.NumAttentionHeads;
        var logits = model.Logits;                                          // [T, V]
        var maxLogits = model.MaxLogits;                                    // [L, H]
        if (options.Json)
        {
            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                w.WriteStartArray("ids");
                foreach (int id in tokens)
                {
                    w.WriteNumberValue(id);
                }

                w.WriteEndArray();
                WriteMatrix(w, "logits", logits, T, V);
                WriteMatrix(w, "max_logit", maxLogits, L, H);
                w.WriteEndObject();
            }

            context.Out.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
        }
        else
        {
            for (int t = 0; t < T; t++)
            {
                var row = logits.Slice(t * V, V);
                int best = 0;
                for (int v = 1; v < V; v++)
                {
                    best = row[v] > row[best] ? v : best;
                }

                context.Out.WriteLine($"position {t} (id {tokens[t]}): argmax id {best}, logit {row[best]:G6}");
            }

            for (int l = 0; l < L; l++)
            {
                context.Out.WriteLine($"layer {l} max attention logit per head: "
                                      + string.Join(" ", maxLogits.Slice(l * H, H).ToArray().Select(x => x.ToString("G6", CultureInfo.InvariantCulture))));
            }
        }

        return 0;
    }

    /// <summary>Writes a row-major [rows, cols] span as a JSON array of arrays (floats in shortest round-trip form).</summary>
    private static void WriteMatrix(Utf8JsonWriter w, string name, ReadOnlySpan<float> values, int rows, int cols)
    {
        w.WriteStartArray(name);
        for (int r = 0; r < rows; r++)
        {
            w.WriteStartArray();
            foreach (float x in values.Slice(r * cols, cols))
            {
                if (!float.IsFinite(x))
                {
                    throw new K2Exception($"{name}[{r}] holds a non-finite value {x}: the model diverged or the weights are broken");
                }

                w.WriteNumberValue(x);
            }

            w.WriteEndArray();
        }

        w.WriteEndArray();
    }

    // ------------------------------------------------------------------ shared helpers

    /// <summary>
    /// Parses "1,2,3" into token ids, each checked against the model's vocabulary; the error names the
    /// offending entry or id.
    /// </summary>
    internal static int[] ParseIds(string text, int vocabSize)
    {
        var ids = new List<int>();
        foreach (string item in text.Split(',', StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(item, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int id))
            {
                throw new K2Exception($"--ids: '{item}' is not an integer token id");
            }

            if (id < 0 || id >= vocabSize)
            {
                throw new K2Exception($"--ids: token id {id} is outside the vocabulary [0, {vocabSize})");
            }

            ids.Add(id);
        }

        return ids.ToArray();
    }

    /// <summary>
    /// The tokenizer for a new checkpoint: a tokenizer directory, a rank file (with the tokenizer_config.json
    /// beside it, if there is one), or by default the byte-level tokenizer with the special tokens.
    /// </summary>
    internal static (BpeTokenizer Tokenizer, string Description) ResolveTokenizer(string? path)
    {
        if (path is null)
        {
            return (BpeTokenizer.ByteLevel(), $"the default byte-level tokenizer (256 bytes + {SpecialTokens.All.Count} special tokens)");
        }

        if (Directory.Exists(path))
        {
            return (BpeTokenizer.Load(path), $"--tokenizer {path}");
        }

        if (File.Exists(path))
        {
            string beside = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, BpeTokenizer.ConfigFileName);
            return (BpeTokenizer.LoadFiles(path, File.Exists(beside) ? beside : null), $"--tokenizer {path}");
        }

        throw new K2Exception($"--tokenizer {path}: no such tokenizer file or directory");
    }
}
