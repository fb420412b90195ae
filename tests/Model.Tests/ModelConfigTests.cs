using K2RL.Common;
using K2RL.Model;
using K2RL.Tests.Shared;

namespace K2RL.Model.Tests;

public class ModelConfigTests
{
    private static string Preset(string name) => Path.Combine(ExternalTools.RepoRoot(), "configs", "models", name + ".json");

    [Theory]
    [InlineData("kimi-k2", 1_026_408_209_408L, 32_861_477_888L)]
    [InlineData("deepseek-v3", 671_026_404_352L, 37_552_282_624L)]
    public void FullSizePresetsMatchTheReportedParameterCounts(string preset, long total, long activated)
    {
        var layout = new ParameterLayout(ModelConfig.Load(Preset(preset)));
        Assert.Equal(total, layout.ParameterCount);
        Assert.Equal(activated, layout.ActivatedParameterCount);
    }

    [Fact]
    public void LayoutNamesFollowHuggingFaceAndTilesTheBufferWithoutOverlap()
    {
        var config = ModelConfig.Load(Preset("k2-nano"));
        var layout = new ParameterLayout(config);
        Assert.Equal(new[] { 512, 256 }, layout["model.embed_tokens.weight"].Shape);
        Assert.Equal(new[] { 4 * 48, 128 }, layout["model.layers.0.self_attn.q_b_proj.weight"].Shape);
        Assert.Equal(new[] { 64 + 16, 256 }, layout["model.layers.2.self_attn.kv_a_proj_with_mqa.weight"].Shape);
        Assert.Equal(new[] { 4 * 64, 64 }, layout["model.layers.2.self_attn.kv_b_proj.weight"].Shape);
        Assert.True(layout.Contains("model.layers.0.mlp.gate_proj.weight"));           // dense first layer
        Assert.False(layout.Contains("model.layers.0.mlp.gate.weight"));
        Assert.Equal(new[] { 128, 256 }, layout["model.layers.5.mlp.experts.31.gate_proj.weight"].Shape);
        Assert.Equal(new[] { 32 }, layout["model.layers.1.mlp.gate.e_score_correction_bias"].Shape);
        Assert.Equal(new[] { 256, 128 }, layout["model.layers.1.mlp.shared_experts.down_proj.weight"].Shape);
        Assert.Equal(new[] { 512, 256 }, layout["lm_head.weight"].Shape);

        long end = 0;
        foreach (var t in layout.Tensors)
        {
            Assert.True(t.Offset >= end, $"{t.Name} overlaps the previous tensor");
            Assert.Equal(0, t.Offset % ParameterLayout.Alignment);
            end = t.Offset + t.Length;
        }

        Assert.True(end <= layout.TotalLength);
        Assert.Equal(17.9, Math.Round(layout.ParameterCount / 1e6, 1)); // 17.9M total, per ECOSYSTEM.md
        Assert.Equal(4.1, Math.Round(layout.ActivatedParameterCount / 1e6, 1)); // 4.1M activated
    }

    [Theory]
    [InlineData("{\"vocab_size\": 10}", "hidden_size")]
    [InlineData("{\"vocab_size\": \"x\"}", "vocab_size")]
    [InlineData("{ not json", "malformed JSON")]
    public void BadConfigsNameTheKey(string json, string expected)
    {
        var e = Assert.Throws<ConfigException>(() => ModelConfig.Parse(json, "bad.json"));
        Assert.Contains(expected, e.Message);
        Assert.Contains("bad.json", e.Message);
    }

    [Fact]
    public void ImpossibleRoutingIsRejected()
    {
        string json = File.ReadAllText(Preset("k2-nano")).Replace("\"num_experts_per_tok\": 4", "\"num_experts_per_tok\": 40");
        var e = Assert.Throws<ConfigException>(() => ModelConfig.Parse(json, "nano.json"));
        Assert.Contains("num_experts_per_tok", e.Message);
    }

    [Fact]
    public void ConfigJsonRoundTrips()
    {
        var config = ModelConfig.Load(Preset("k2-test"));
        Assert.Equal(config, ModelConfig.Parse(config.ToJson()));
    }

    /// <summary>A setting K2RL does not implement makes the file describe another model: refused, naming the key.</summary>
    [Theory]
    [InlineData("\"hidden_act\": \"gelu\"", "hidden_act")]
    [InlineData("\"attention_bias\": true", "attention_bias")]
    [InlineData("\"mlp_bias\": true", "mlp_bias")]
    [InlineData("\"topk_method\": \"greedy\"", "topk_method")]
    [InlineData("\"moe_layer_freq\": 0", "moe_layer_freq")]
    [InlineData("\"moe_layer_freq\": -2", "moe_layer_freq")]
    [InlineData("\"rms_norm_eps\": 5", "rms_norm_eps")]
    [InlineData("\"rms_norm_eps\": 0", "rms_norm_eps")]
    [InlineData("\"rope_theta\": 1e300", "rope_theta")]
    [InlineData("\"rope_theta\": 0.5", "rope_theta")]
    [InlineData("\"routed_scaling_factor\": 1e30", "routed_scaling_factor")]
    [InlineData("\"pretraining_tp\": 2", "pretraining_tp")]
    [InlineData("\"quantization_config\": {\"quant_method\": \"fp8\"}", "quantization_config")]
    [InlineData("\"model_type\": \"llama\"", "model_type")]
    [InlineData("\"rope_scaling\": {\"type\": 7}", "rope_scaling.type")]
    [InlineData("\"rope_scaling\": {\"type\": \"yarn\", \"factor\": \"x\"}", "rope_scaling.factor")]
    [InlineData("\"rope_scaling\": {\"type\": \"yarn\", \"original_max_position_embeddings\": 1e300}", "original_max_position_embeddings")]
    [InlineData("\"hidden_size\": 2147483647", "hidden_size")]
    [InlineData("\"n_routed_experts\": 1000000000", "n_routed_experts")]
    [InlineData("\"vocab_size\": 16000000, \"hidden_size\": 60000", "elements")]
    [InlineData("\"num_hidden_layers\": 3, \"num_hidden_layers\": 4", "Duplicate")]
    public void UnimplementedOrAbsurdSettingsAreRefusedNamingTheKey(string keys, string expected)
    {
        string preset = File.ReadAllText(Preset("k2-nano"));
        string json;
        if (expected == "Duplicate")
        {
            json = "{" + keys + ", " + preset.TrimStart()[1..];
        }
        else
        {
            var config = System.Text.Json.Nodes.JsonNode.Parse(preset)!.AsObject();
            foreach (var (key, value) in System.Text.Json.Nodes.JsonNode.Parse("{" + keys + "}")!.AsObject())
            {
                config[key] = value?.DeepClone();
            }

            json = config.ToJsonString();
        }

        var e = Assert.Throws<ConfigException>(() => ModelConfig.Parse(json, "hostile.json"));
        Assert.Contains(expected, e.Message);
        Assert.Contains("hostile.json", e.Message);
    }

    [Theory]
    [InlineData("k2-nano")]
    [InlineData("kimi-k2")]
    [InlineData("deepseek-v3")]
    public void ThePresetsStayWithinTheLimits(string preset)
    {
        var config = ModelConfig.Load(Preset(preset));
        Assert.Equal(new ParameterLayout(config).Tensors.Count, ParameterLayout.TensorCount(config));
    }
}
