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

    public IEnumerable<Command> Build(CliContext context)
    {
        yield return Info(context);
    }

    private static Option<string> ConfigOption() => new("--config")
    {
        Description = "Model config (Hugging Face config.json keys), e.g. configs/models/k2-nano.json",
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
        var info = ModelInfo.Compute(ModelConfig.Load(options.Config), options.Seq);
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
            ("  attention", $"{info.AttentionFlopsPerToken:0.000e+0}  = 6 × {L} × {H} × ({c.QkHeadDim} + {c.VHeadDim}) × {info.SequenceLength}"),
        };
        int width = rows.Max(r => r.Item1.Length);
        foreach (var (key, value) in rows)
        {
            o.WriteLine(key.PadRight(width + 2) + value);
        }
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
