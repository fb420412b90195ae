using K2RL.Model;
using K2RL.Tests.Shared;

namespace K2RL.Trainer.Tests;

internal static class TestUtil
{
    public static ModelConfig TestConfig() => ModelConfig.Load(Path.Combine(ExternalTools.RepoRoot(), "configs/models/k2-test.json"));

    public static ModelConfig NanoConfig() => ModelConfig.Load(Path.Combine(ExternalTools.RepoRoot(), "configs/models/k2-nano.json"));

    public static float[] Gaussian(int n, int seed, float std = 1f)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            x[i] = (float)(std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }

        return x;
    }

    /// <summary>A temporary directory removed on dispose.</summary>
    public sealed class TempDir : IDisposable
    {
        public TempDir()
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "k2rl-trainer-" + Guid.NewGuid().ToString("N")[..10]);
            Directory.CreateDirectory(Path);
        }

        public string Path { get; }

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>Singular values, ascending.</summary>
    public static double[] SingularValues(float[] a, int rows, int cols) =>
        K2RL.Tests.Shared.Spectral.SingularValues(a, rows, cols);
}
