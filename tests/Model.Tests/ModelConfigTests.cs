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
}
