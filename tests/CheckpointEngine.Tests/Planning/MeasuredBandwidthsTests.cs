using K2RL.CheckpointEngine.Planning;
using K2RL.Common;

namespace K2RL.CheckpointEngine.Tests.Planning;

public class MeasuredBandwidthsTests
{
    [Fact]
    public void ReadsTheBenchFieldsAndIgnoresTheRest()
    {
        var m = MeasuredBandwidths.Parse("""{"memcpy_gb_per_s": 7.5, "shm_gb_per_s": 3.25, "bytes": 123, "net_gb_per_s": null}""", "bw.json");
        Assert.Equal(new MeasuredBandwidths(7.5, 3.25, null), m);
    }

    [Theory]
    [InlineData("{\"bytes\": 1}", "has none of memcpy_gb_per_s, shm_gb_per_s, net_gb_per_s")]
    [InlineData("{\"shm_gb_per_s\": 0}", "\"shm_gb_per_s\" must be > 0 GB/s, got 0")]
    [InlineData("{\"net_gb_per_s\": -1.5}", "\"net_gb_per_s\" must be > 0 GB/s, got -1.5")]
    [InlineData("{\"memcpy_gb_per_s\": \"fast\"}", "\"memcpy_gb_per_s\" must be a number, got \"fast\"")]
    [InlineData("[1, 2]", "must be one JSON object")]
    [InlineData("{\"memcpy_gb_per_s\": 1,\n", "not JSON (line 2)")]
    public void BadFilesAreRefusedNamingTheFileAndField(string json, string message)
    {
        var e = Assert.Throws<CorruptFileException>(() => MeasuredBandwidths.Parse(json, "bw.json"));
        Assert.StartsWith("bw.json: ", e.Message);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void AMissingFileIsAConfigErrorNamingIt()
    {
        var e = Assert.Throws<ConfigException>(() => MeasuredBandwidths.Load("/nonexistent/bw.json"));
        Assert.Contains("/nonexistent/bw.json", e.Message);
    }
}
