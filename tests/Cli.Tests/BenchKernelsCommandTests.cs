using System.Text.Json;
using K2RL.Cli;

namespace K2RL.Cli.Tests;

public class BenchKernelsCommandTests
{
    [Fact]
    public async Task QuickJsonReportsEveryShapeAndFormWithPositiveGflops()
    {
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        int code = await CliApp.RunAsync(new[] { "bench", "kernels", "--json", "--quick" }, new CliContext(stdout, stderr));
        Assert.True(code == 0, stderr.ToString());

        using var doc = JsonDocument.Parse(stdout.ToString());
        Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
        var rows = doc.RootElement.GetProperty("gemm").EnumerateArray().ToList();
        var seen = new HashSet<(string, int, int, int)>();
        foreach (var row in rows)
        {
            var key = (row.GetProperty("op").GetString()!, row.GetProperty("m").GetInt32(), row.GetProperty("n").GetInt32(),
                row.GetProperty("k").GetInt32());
            Assert.True(seen.Add(key), $"duplicate {key}");
            Assert.True(row.GetProperty("gflops").GetDouble() > 0, $"{key} has no positive gflops");
        }

        var expected = new List<(int M, int N, int K)> { (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048) };
        foreach (var (din, dout) in new[] { (256, 768), (768, 256), (256, 128), (128, 192), (256, 80), (64, 256), (128, 256), (256, 512) })
        {
            expected.Add((2048, dout, din));
        }

        expected.Add((256, 128, 256));
        expected.Add((256, 256, 128));
        foreach (var op in new[] { "nn", "nt", "tn" })
        {
            foreach (var (m, n, k) in expected)
            {
                Assert.Contains((op, m, n, k), seen);
            }
        }

        Assert.Equal(expected.Count * 3, rows.Count);
        // The scalar twin is timed on the small expert shapes even in --quick mode.
        Assert.Contains(rows, r => r.GetProperty("m").GetInt32() == 256 && r.GetProperty("naive_gflops").ValueKind == JsonValueKind.Number);
        Assert.Contains("[39/39]", stderr.ToString());
    }

    [Fact]
    public async Task RejectsAZeroThreadCount()
    {
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        int code = await CliApp.RunAsync(new[] { "bench", "kernels", "--threads", "0" }, new CliContext(stdout, stderr));
        Assert.NotEqual(0, code);
        Assert.Contains("--threads", stderr.ToString());
        Assert.Equal("", stdout.ToString());
    }

    [Fact]
    public async Task RejectsALibraryWithoutSgemm()
    {
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        string notBlas = Path.Combine(Path.GetTempPath(), $"k2rl-not-blas-{Guid.NewGuid():N}.so");
        await File.WriteAllTextAsync(notBlas, "not a shared library");
        try
        {
            int code = await CliApp.RunAsync(new[] { "bench", "kernels", "--quick", "--openblas", notBlas }, new CliContext(stdout, stderr));
            Assert.Equal(2, code);
            Assert.Contains("cblas_sgemm", stderr.ToString());
            Assert.Equal("", stdout.ToString());
        }
        finally
        {
            File.Delete(notBlas);
        }
    }
}
