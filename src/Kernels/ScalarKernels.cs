namespace K2RL.Kernels;

/// <summary>
/// The scalar twins: plain loops, one output at a time, in the simplest order. They are the oracle
/// that tests compare the SIMD kernels against, and the fallback where no vector width is
/// accelerated. Shapes and argument order are those of the fast kernels (outputs, inputs, weights,
/// sizes; backward: gradients first, then saved activations). Parameter gradients accumulate (+=);
/// activation gradients are assigned (=).
/// Letters: rows = B*T (or any leading extent), C channels, V vocabulary.
/// </summary>
public static class ScalarKernels
{
    /// <summary>C[M,N] (+)= op(A)·op(B); see <see cref="GemmOp"/> for the stored shapes.</summary>
    public static void Gemm(GemmOp op, Span<float> c, int ldc, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, int m, int n, int k, bool accumulate)
    {
        Kernels.Gemm.Validate(op, c.Length, ldc, a.Length, lda, b.Length, ldb, m, n, k);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float sum = 0f;
                for (int p = 0; p < k; p++)
                {
                    float av = op == GemmOp.TN ? a[p * lda + i] : a[i * lda + p];
                    float bv = op == GemmOp.NT ? b[j * ldb + p] : b[p * ldb + j];
                    sum += av * bv;
                }

                c[i * ldc + j] = accumulate ? c[i * ldc + j] + sum : sum;
            }
        }
    }

    /// <summary>
    /// C[M,N] = A[M,K]·B[N,K]ᵀ with B's rows in bf16 as <see cref="SmallGemm.PackBf16Row"/> stores them: the
    /// arithmetic of <see cref="Gemm"/> (NT) over the widened values, so the two give the same bits.
    /// </summary>
    public static void MultiplyNTBf16(Span<float> c, int ldc, ReadOnlySpan<float> a, int lda, ReadOnlySpan<ushort> b, int ldb,
        int m, int n, int k)
    {
        Kernels.Gemm.Validate(GemmOp.NT, c.Length, ldc, a.Length, lda, b.Length, ldb, m, n, k);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float sum = 0f;
                for (int p = 0; p < k; p++)
                {
                    sum += a[i * lda + p] * Bf16.ToFloat(b[j * ldb + SmallGemm.PackedIndex(p, k)]);
                }

                c[i * ldc + j] = sum;
            }
        }
    }

    /// <summary>out[r,:] = inp[r,:] * rstd[r] * weight; rstd[r] = 1/sqrt(mean(inp[r,:]^2) + eps).</summary>
    public static void RmsNormForward(Span<float> output, Span<float> rstd, ReadOnlySpan<float> inp,
        ReadOnlySpan<float> weight, int rows, int C, float eps)
    {
        Kernels.RmsNorm.Validate(output.Length, rstd.Length, inp.Length, weight.Length, rows, C);
        for (int r = 0; r < rows; r++)
        {
            double ss = 0;
            for (int i = 0; i < C; i++)
            {
                float x = inp[r * C + i];
                ss += x * x;
            }

            float s = 1f / MathF.Sqrt((float)(ss / Math.Max(C, 1)) + eps);
            rstd[r] = s;
            for (int i = 0; i < C; i++)
            {
                output[r * C + i] = inp[r * C + i] * s * weight[i];
            }
        }
    }

    /// <summary>dInp = (assigned); dWeight += .</summary>
    public static void RmsNormBackward(Span<float> dInp, Span<float> dWeight, ReadOnlySpan<float> dOut,
        ReadOnlySpan<float> inp, ReadOnlySpan<float> weight, ReadOnlySpan<float> rstd, int rows, int C)
    {
        Kernels.RmsNorm.ValidateBackward(dInp.Length, dWeight.Length, dOut.Length, inp.Length, weight.Length,
            rstd.Length, rows, C);
        for (int r = 0; r < rows; r++)
        {
            float s = rstd[r];
            // y_i = x_i s w_i ; dx_j = s w_j g_j - s^3 x_j / C * sum_i g_i w_i x_i
            double dot = 0;
            for (int i = 0; i < C; i++)
            {
                dot += dOut[r * C + i] * weight[i] * inp[r * C + i];
            }

            float coef = (float)(dot / C) * s * s * s;
            for (int i = 0; i < C; i++)
            {
                float g = dOut[r * C + i];
                float x = inp[r * C + i];
                dWeight[i] += g * x * s;
                dInp[r * C + i] = s * weight[i] * g - coef * x;
            }
        }
    }

    /// <summary>
    /// Row softmax of scale*logits with an optional causal mask: row r sees columns j ≤ r + causalOffset
    /// (masked probabilities are 0). Returns the largest unmasked scaled logit (−∞ if none).
    /// </summary>
    public static float SoftmaxForward(Span<float> probs, ReadOnlySpan<float> logits, int rows, int cols,
        float scale, bool causal, int causalOffset)
    {
        Kernels.Softmax.Validate(probs.Length, logits.Length, rows, cols);
        float maxAll = float.NegativeInfinity;
        for (int r = 0; r < rows; r++)
        {
            int visible = causal ? Math.Clamp(r + causalOffset + 1, 0, cols) : cols;
            float max = float.NegativeInfinity;
            for (int j = 0; j < visible; j++)
            {
                max = Math.Max(max, logits[r * cols + j] * scale);
            }

            maxAll = Math.Max(maxAll, max);
            double sum = 0;
            for (int j = 0; j < visible; j++)
            {
                float e = MathF.Exp(logits[r * cols + j] * scale - max);
                probs[r * cols + j] = e;
                sum += e;
            }

            float inv = sum > 0 ? (float)(1.0 / sum) : 0f;
            for (int j = 0; j < cols; j++)
            {
                probs[r * cols + j] = j < visible ? probs[r * cols + j] * inv : 0f;
            }
        }

        return maxAll;
    }

    /// <summary>dLogits = scale * p ⊙ (dProbs − Σ p dProbs) (assigned). Masked entries (p = 0) get 0.</summary>
    public static void SoftmaxBackward(Span<float> dLogits, ReadOnlySpan<float> dProbs, ReadOnlySpan<float> probs,
        int rows, int cols, float scale)
    {
        Kernels.Softmax.ValidateBackward(dLogits.Length, dProbs.Length, probs.Length, rows, cols);
        for (int r = 0; r < rows; r++)
        {
            double dot = 0;
            for (int j = 0; j < cols; j++)
            {
                dot += probs[r * cols + j] * dProbs[r * cols + j];
            }

            for (int j = 0; j < cols; j++)
            {
                dLogits[r * cols + j] = scale * probs[r * cols + j] * (dProbs[r * cols + j] - (float)dot);
            }
        }
    }

    /// <summary>out = silu(gate) * up, silu(x) = x * sigmoid(x).</summary>
    public static void SwiGluForward(Span<float> output, ReadOnlySpan<float> gate, ReadOnlySpan<float> up, int n)
    {
        Kernels.SwiGlu.Validate(output.Length, gate.Length, up.Length, n);
        for (int i = 0; i < n; i++)
        {
            float g = gate[i];
            float sig = 1f / (1f + MathF.Exp(-g));
            output[i] = g * sig * up[i];
        }
    }

    /// <summary>dGate, dUp assigned.</summary>
    public static void SwiGluBackward(Span<float> dGate, Span<float> dUp, ReadOnlySpan<float> dOut,
        ReadOnlySpan<float> gate, ReadOnlySpan<float> up, int n)
    {
        Kernels.SwiGlu.ValidateBackward(dGate.Length, dUp.Length, dOut.Length, gate.Length, up.Length, n);
        for (int i = 0; i < n; i++)
        {
            float g = gate[i];
            float sig = 1f / (1f + MathF.Exp(-g));
            float silu = g * sig;
            dUp[i] = dOut[i] * silu;
            dGate[i] = dOut[i] * up[i] * sig * (1f + g * (1f - sig));
        }
    }

    /// <summary>
    /// Rotary embedding on adjacent pairs (x[2i], x[2i+1]), in place. x is [rows, rowStride]; in each row,
    /// <paramref name="vecs"/> vectors of length <paramref name="dim"/> start at offset + v*vecStride and all use
    /// position positions[r]. cos/sin are [maxPos, dim/2] tables (<see cref="Kernels.Rope.BuildTables"/>).
    /// inverse rotates by −angle (the backward of a rotation is its transpose).
    /// </summary>
    public static void RopeApply(Span<float> x, ReadOnlySpan<int> positions, ReadOnlySpan<float> cos,
        ReadOnlySpan<float> sin, int rows, int rowStride, int vecs, int vecStride, int offset, int dim, bool inverse)
    {
        Kernels.Rope.Validate(x.Length, positions.Length, cos.Length, sin.Length, rows, rowStride, vecs, vecStride,
            offset, dim);
        int half = dim / 2;
        for (int r = 0; r < rows; r++)
        {
            int pos = positions[r];
            Kernels.Rope.CheckPosition(pos, cos.Length / Math.Max(half, 1));
            for (int v = 0; v < vecs; v++)
            {
                int baseIdx = r * rowStride + offset + v * vecStride;
                for (int i = 0; i < half; i++)
                {
                    float c = cos[pos * half + i];
                    float s = inverse ? -sin[pos * half + i] : sin[pos * half + i];
                    float x0 = x[baseIdx + 2 * i];
                    float x1 = x[baseIdx + 2 * i + 1];
                    x[baseIdx + 2 * i] = x0 * c - x1 * s;
                    x[baseIdx + 2 * i + 1] = x0 * s + x1 * c;
                }
            }
        }
    }

    /// <summary>
    /// Per row: losses[r] = logsumexp(logits[r]) − logits[r, target]; lse[r] saved for backward.
    /// A target &lt; 0 is ignored (loss 0). Targets ≥ V throw.
    /// </summary>
    public static void CrossEntropyForward(Span<float> losses, Span<float> lse, ReadOnlySpan<float> logits,
        ReadOnlySpan<int> targets, int rows, int V)
    {
        Kernels.CrossEntropy.Validate(losses.Length, lse.Length, logits.Length, targets.Length, rows, V);
        for (int r = 0; r < rows; r++)
        {
            float l = LogSumExp(logits.Slice(r * V, V));
            lse[r] = l;
            int t = targets[r];
            Kernels.CrossEntropy.CheckTarget(t, V, r);
            losses[r] = t < 0 ? 0f : l - logits[r * V + t];
        }
    }

    /// <summary>dLogits[r,:] = (softmax(logits[r]) − onehot(target)) * dLoss[r] (assigned; 0 for ignored rows).</summary>
    public static void CrossEntropyBackward(Span<float> dLogits, ReadOnlySpan<float> dLoss, ReadOnlySpan<float> logits,
        ReadOnlySpan<float> lse, ReadOnlySpan<int> targets, int rows, int V)
    {
        Kernels.CrossEntropy.ValidateBackward(dLogits.Length, dLoss.Length, logits.Length, lse.Length, targets.Length,
            rows, V);
        for (int r = 0; r < rows; r++)
        {
            int t = targets[r];
            for (int j = 0; j < V; j++)
            {
                float p = MathF.Exp(logits[r * V + j] - lse[r]);
                float g = t < 0 ? 0f : (p - (j == t ? 1f : 0f)) * dLoss[r];
                dLogits[r * V + j] = g;
            }
        }
    }

    /// <summary>out[r,:] = logits[r,:] − logsumexp(logits[r,:]).</summary>
    public static void LogSoftmaxForward(Span<float> output, ReadOnlySpan<float> logits, int rows, int V)
    {
        Kernels.Softmax.Validate(output.Length, logits.Length, rows, V);
        for (int r = 0; r < rows; r++)
        {
            float l = LogSumExp(logits.Slice(r * V, V));
            for (int j = 0; j < V; j++)
            {
                output[r * V + j] = logits[r * V + j] - l;
            }
        }
    }

    /// <summary>
    /// log Σ exp(row[j]) in two parts, the row's max and log Σ exp(row[j] − max) summed in double, so each caller
    /// rounds where it always has: the cross-entropy and log-softmax oracles as <c>max + (float)logSum</c>, the
    /// sampler's log-probability as <c>row[t] − max − logSum</c> in double.
    /// </summary>
    public static (float Max, double LogSum) LogSumExpParts(ReadOnlySpan<float> row)
    {
        float max = float.NegativeInfinity;
        foreach (float x in row)
        {
            max = Math.Max(max, x);
        }

        double sum = 0;
        foreach (float x in row)
        {
            sum += Math.Exp(x - max);
        }

        return (max, Math.Log(sum));
    }

    private static float LogSumExp(ReadOnlySpan<float> row)
    {
        var (max, logSum) = LogSumExpParts(row);
        return max + (float)logSum;
    }

    /// <summary>
    /// Per row, the indices of the k largest scores, largest first; ties go to the lower index; NaN ranks lowest.
    /// </summary>
    public static void TopK(Span<int> indices, ReadOnlySpan<float> scores, int rows, int n, int k)
    {
        Kernels.TopK.Validate(indices.Length, scores.Length, rows, n, k);
        Span<bool> taken = n <= 1024 ? stackalloc bool[n] : new bool[n];
        for (int r = 0; r < rows; r++)
        {
            taken.Clear();
            for (int t = 0; t < k; t++)
            {
                int best = -1;
                for (int j = 0; j < n; j++)
                {
                    if (taken[j])
                    {
                        continue;
                    }

                    if (best < 0 || Kernels.TopK.Before(scores[r * n + j], scores[r * n + best]))
                    {
                        best = j;
                    }
                }

                taken[best] = true;
                indices[r * k + t] = best;
            }
        }
    }

    /// <summary>
    /// Newton–Schulz 5 (quintic, (a,b,c) = (3.4445, −4.7750, 2.0315)) of G[rows, cols] into output[rows, cols]:
    /// X = G/(‖G‖_F + 1e-7), transposed first when rows &gt; cols; 5× A = XXᵀ; B = bA + cAA; X = aX + BX.
    /// </summary>
    public static void NewtonSchulz5(Span<float> output, ReadOnlySpan<float> g, int rows, int cols, int steps = 5)
    {
        Kernels.NewtonSchulz.Validate(output.Length, g.Length, rows, cols, steps);
        bool transpose = rows > cols;
        int m = transpose ? cols : rows; // X is [m, n] with m <= n
        int n = transpose ? rows : cols;
        var x = new float[m * n];
        double norm = 0;
        for (int i = 0; i < g.Length && i < rows * cols; i++)
        {
            norm += (double)g[i] * g[i];
        }

        float inv = 1f / ((float)Math.Sqrt(norm) + 1e-7f);
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                float v = g[i * cols + j] * inv;
                if (transpose)
                {
                    x[j * n + i] = v;
                }
                else
                {
                    x[i * n + j] = v;
                }
            }
        }

        var a = new float[m * m];
        var bm = new float[m * m];
        var next = new float[m * n];
        for (int s = 0; s < steps; s++)
        {
            Gemm(GemmOp.NT, a, m, x, n, x, n, m, m, n, false);         // A = X Xᵀ
            Gemm(GemmOp.NN, bm, m, a, m, a, m, m, m, m, false);        // AA
            for (int i = 0; i < m * m; i++)
            {
                bm[i] = Kernels.NewtonSchulz.B * a[i] + Kernels.NewtonSchulz.C * bm[i];
            }

            Gemm(GemmOp.NN, next, n, bm, m, x, n, m, n, m, false);     // B X
            for (int i = 0; i < m * n; i++)
            {
                x[i] = Kernels.NewtonSchulz.A * x[i] + next[i];
            }
        }

        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                output[i * cols + j] = transpose ? x[j * n + i] : x[i * n + j];
            }
        }
    }
}
