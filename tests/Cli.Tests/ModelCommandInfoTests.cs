using System.Text.Json.Nodes;
using K2RL.Tests.Shared;

namespace K2RL.Cli.Tests;

public class ModelCommandInfoTests
{
    internal static string Preset(string name) => Path.Combine(ExternalTools.RepoRoot(), "configs", "models", name + ".json");

    internal static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = await CliApp.RunAsync(args, new CliContext(output, error));
        return (code, output.ToString(), error.ToString());
    }

    internal static async Task<JsonObject> RunJson(params string[] args)
    {
        var (code, stdout, stderr) = await Run(args);
        Assert.True(code == 0, $"exit {code}: {stderr}");
        Assert.Single(stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));     // exactly one JSON object
        return JsonNode.Parse(stdout)!.AsObject();
    }

    [Theory]
    [InlineData("kimi-k2", 1_026_408_209_408L, 32_861_477_888L)]
    [InlineData("deepseek-v3", 671_026_404_352L, 37_552_282_624L)]
    public async Task InfoReportsThePublishedParameterCounts(string preset, long total, long activated)
    {
        var json = await RunJson("model", "info", "--config", Preset(preset), "--json");
        Assert.Equal(total, json["total_params"]!.GetValue<long>());
        Assert.Equal(activated, json["activated_params"]!.GetValue<long>());
    }

    [Fact]
    public async Task InfoKvCacheAndFlopsForKimiK2()
    {
        var json = await RunJson("model", "info", "--config", Preset("kimi-k2"), "--json");
        var kv = json["kv_cache_bytes_per_token"]!;
        Assert.Equal(61L * (512 + 64) * 4, kv["compressed"]!.GetValue<long>());                 // 140,544
        Assert.Equal(61L * 64 * (128 + 64 + 128) * 4, kv["naive"]!.GetValue<long>());           // 4,997,120
        Assert.Equal(576, kv["values_per_layer_compressed"]!.GetValue<long>());                 // SPEC §1: 576 vs 20,480
        Assert.Equal(20_480, kv["values_per_layer_naive"]!.GetValue<long>());
        Assert.Equal(35.56, kv["ratio"]!.GetValue<double>());

        // Matmul params: activated minus the embedding table (163840 × 7168) minus the norm vectors
        // (61 × (7168 + 7168 + 1536 + 512) per layer, plus the final 7168).
        long matmul = 32_861_477_888L - 163_840L * 7168 - (61L * (7168 + 7168 + 1536 + 512) + 7168);
        Assert.Equal(31_686_066_176L, matmul);
        Assert.Equal(matmul, json["activated_matmul_params"]!.GetValue<long>());
        Assert.Equal(4096, json["seq_len"]!.GetValue<int>());
        long attention = 6L * 61 * 64 * (128 + 64 + 128) * 4096;
        Assert.Equal(attention, json["flops_per_token_attention"]!.GetValue<long>());
        Assert.Equal(6 * matmul + attention, json["flops_per_token"]!.GetValue<long>());
    }

    [Fact]
    public async Task InfoOnDeepSeekV3HasTwiceTheNaiveCacheOfK2()
    {
        var json = await RunJson("model", "info", "--config", Preset("deepseek-v3"), "--json", "--seq", "1000");
        Assert.Equal(61L * 576 * 4, json["kv_cache_bytes_per_token"]!["compressed"]!.GetValue<long>());
        Assert.Equal(61L * 128 * 320 * 4, json["kv_cache_bytes_per_token"]!["naive"]!.GetValue<long>());
        Assert.Equal(6L * 61 * 128 * 320 * 1000, json["flops_per_token_attention"]!.GetValue<long>());
    }

    [Fact]
    public async Task InfoWithoutJsonPrintsATable()
    {
        var (code, stdout, stderr) = await Run("model", "info", "--config", Preset("kimi-k2"));
        Assert.True(code == 0, stderr);
        Assert.Contains("1,026,408,209,408", stdout);
        Assert.Contains("32,861,477,888", stdout);
        Assert.Contains("140,544 B fp32", stdout);
        Assert.Contains("35.6×", stdout);
        Assert.Equal("", stderr);
    }

    [Fact]
    public async Task InfoOnAMissingOrBadConfigFailsWithTheKey()
    {
        var (code, stdout, stderr) = await Run("model", "info", "--config", "/no/such/config.json", "--json");
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains("/no/such/config.json", stderr);

        string bad = Path.Combine(Path.GetTempPath(), $"k2rl-bad-{Guid.NewGuid():N}.json");
        File.WriteAllText(bad, File.ReadAllText(Preset("k2-nano")).Replace("\"hidden_size\": 256", "\"hidden_size\": -1"));
        try
        {
            (code, _, stderr) = await Run("model", "info", "--config", bad);
            Assert.Equal(1, code);
            Assert.Contains("hidden_size", stderr);
        }
        finally
        {
            File.Delete(bad);
        }
    }

    [Fact]
    public async Task InfoRequiresConfig()
    {
        var (code, stdout, stderr) = await Run("model", "info", "--json");
        Assert.NotEqual(0, code);
        Assert.Equal("", stdout);
        Assert.Contains("--config", stderr);
    }
}
