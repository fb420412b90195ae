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

    /// <summary>Singular values of a [rows, cols] matrix: square roots of the eigenvalues of the smaller Gram matrix (Jacobi).</summary>
    public static double[] SingularValues(float[] a, int rows, int cols)
    {
        bool t = rows > cols;
        int m = t ? cols : rows, n = t ? rows : cols;
        double At(int i, int j) => t ? a[j * cols + i] : a[i * cols + j];
        var g = new double[m, m];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < m; j++)
            {
                double s = 0;
                for (int k = 0; k < n; k++)
                {
                    s += At(i, k) * At(j, k);
                }

                g[i, j] = s;
            }
        }

        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0;
            for (int p = 0; p < m; p++)
            {
                for (int q = p + 1; q < m; q++)
                {
                    off += g[p, q] * g[p, q];
                }
            }

            if (off < 1e-22)
            {
                break;
            }

            for (int p = 0; p < m; p++)
            {
                for (int q = p + 1; q < m; q++)
                {
                    if (Math.Abs(g[p, q]) < 1e-300)
                    {
                        continue;
                    }

                    double theta = (g[q, q] - g[p, p]) / (2 * g[p, q]);
                    double tt = Math.Sign(theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    if (theta == 0)
                    {
                        tt = 1;
                    }

                    double c = 1 / Math.Sqrt(tt * tt + 1), s = tt * c;
                    for (int k = 0; k < m; k++)
                    {
                        double gkp = g[k, p], gkq = g[k, q];
                        g[k, p] = c * gkp - s * gkq;
                        g[k, q] = s * gkp + c * gkq;
                    }

                    for (int k = 0; k < m; k++)
                    {
                        double gpk = g[p, k], gqk = g[q, k];
                        g[p, k] = c * gpk - s * gqk;
                        g[q, k] = s * gpk + c * gqk;
                    }
                }
            }
        }

        return Enumerable.Range(0, m).Select(i => Math.Sqrt(Math.Max(0, g[i, i]))).OrderBy(x => x).ToArray();
    }
}
