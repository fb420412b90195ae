namespace K2RL.Tests.Shared;

/// <summary>Linear algebra the tests use as an oracle (double precision, plain loops).</summary>
public static class Spectral
{
    /// <summary>Singular values of X [rows, cols] from the eigenvalues of the smaller Gram matrix (cyclic Jacobi, double), ascending.</summary>
    public static double[] SingularValues(float[] x, int rows, int cols)
    {
        bool wide = rows <= cols;
        int m = wide ? rows : cols, n = wide ? cols : rows;
        double At(int i, int p) => wide ? x[i * cols + p] : x[p * cols + i];
        var a = new double[m, m];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < m; j++)
            {
                for (int p = 0; p < n; p++)
                {
                    a[i, j] += At(i, p) * At(j, p);
                }
            }
        }

        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0;
            for (int p = 0; p < m; p++)
            {
                for (int q = p + 1; q < m; q++)
                {
                    off += a[p, q] * a[p, q];
                    if (Math.Abs(a[p, q]) < 1e-15)
                    {
                        continue;
                    }

                    double theta = (a[q, q] - a[p, p]) / (2 * a[p, q]);
                    double t = Math.Sign(theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    if (theta == 0)
                    {
                        t = 1;
                    }

                    double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
                    for (int k = 0; k < m; k++)
                    {
                        double akp = a[k, p], akq = a[k, q];
                        a[k, p] = c * akp - s * akq;
                        a[k, q] = s * akp + c * akq;
                    }

                    for (int k = 0; k < m; k++)
                    {
                        double apk = a[p, k], aqk = a[q, k];
                        a[p, k] = c * apk - s * aqk;
                        a[q, k] = s * apk + c * aqk;
                    }
                }
            }

            if (off < 1e-24)
            {
                break;
            }
        }

        return Enumerable.Range(0, m).Select(i => Math.Sqrt(Math.Max(0, a[i, i]))).Order().ToArray();
    }
}
