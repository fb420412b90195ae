using K2RL.Kernels;

namespace K2RL.Trainer.Optim;

/// <summary>
/// The optimizer math as pure functions over spans (SPEC §2). Nothing here holds state: the moments live
/// in flat buffers of the parameter layout and <see cref="Optimizer"/> walks them.
/// </summary>
public static class OptimMath
{
    /// <summary>Quintic Newton–Schulz, 5 steps, via the kernel: output[rows, cols] ≈ U Vᵀ of g (singular values ~0.5–1.5).</summary>
    public static void NewtonSchulz5(Span<float> output, ReadOnlySpan<float> g, int rows, int cols, int steps = 5)
        => NewtonSchulz.Orthogonalize(output, g, rows, cols, steps);

    /// <summary>Moonlight's RMS-matching factor for an A×B matrix: 0.2·sqrt(max(A, B)).</summary>
    public static float MuonScale(int rows, int cols) => 0.2f * MathF.Sqrt(Math.Max(rows, cols));

    /// <summary>
    /// One Muon step for W[rows, cols] (Moonlight form, K2 Algorithm 1):
    /// M = mu·M + G; X = nesterov ? G + mu·M : M; O = NS5(X)·0.2·sqrt(max(A,B)); W = W − lr·(O + wd·W).
    /// <paramref name="scratchIn"/> and <paramref name="scratchOut"/> hold rows·cols floats each.
    /// </summary>
    public static void MuonUpdate(Span<float> param, ReadOnlySpan<float> grad, Span<float> momentum,
        Span<float> scratchIn, Span<float> scratchOut, int rows, int cols,
        float lr, float mu, bool nesterov, float wd, int nsSteps = 5)
    {
        int n = rows * cols;
        if (param.Length < n || grad.Length < n || momentum.Length < n || scratchIn.Length < n || scratchOut.Length < n)
        {
            throw new ArgumentException($"MuonUpdate: a span is shorter than the [{rows}, {cols}] matrix");
        }

        MuonMomentum(scratchIn[..n], momentum, grad, mu, nesterov);
        NewtonSchulz5(scratchOut[..n], scratchIn[..n], rows, cols, nsSteps);
        MuonApply(param, scratchOut[..n], rows, cols, lr, wd);
    }

    /// <summary>M = mu·M + G; x = nesterov ? G + mu·M : M, over x.Length elements (Muon's NS input).</summary>
    public static void MuonMomentum(Span<float> x, Span<float> momentum, ReadOnlySpan<float> grad, float mu, bool nesterov)
    {
        for (int i = 0; i < x.Length; i++)
        {
            float m = mu * momentum[i] + grad[i];
            momentum[i] = m;
            x[i] = nesterov ? grad[i] + mu * m : m;
        }
    }

    /// <summary>W = W − lr·(O·0.2·sqrt(max(A,B)) + wd·W) for the orthogonalized update O[rows, cols].</summary>
    public static void MuonApply(Span<float> param, ReadOnlySpan<float> orthogonal, int rows, int cols, float lr, float wd)
    {
        float scale = MuonScale(rows, cols);
        for (int i = 0; i < orthogonal.Length; i++)
        {
            param[i] -= lr * (orthogonal[i] * scale + wd * param[i]);
        }
    }

    /// <summary>Global L2 norm of a gradient buffer (double accumulation, fixed order).</summary>
    public static double GlobalNorm(ReadOnlySpan<float> grad)
    {
        double s = 0;
        for (int i = 0; i < grad.Length; i++)
        {
            s += (double)grad[i] * grad[i];
        }

        return Math.Sqrt(s);
    }

    /// <summary>Scales the gradient so its global norm is at most <paramref name="maxNorm"/>; returns the norm before clipping.</summary>
    public static double ClipGlobalNorm(Span<float> grad, double maxNorm)
    {
        double norm = GlobalNorm(grad);
        if (maxNorm > 0 && norm > maxNorm && double.IsFinite(norm))
        {
            float f = (float)(maxNorm / (norm + 1e-6));
            for (int i = 0; i < grad.Length; i++)
            {
                grad[i] *= f;
            }
        }

        return norm;
    }
}
