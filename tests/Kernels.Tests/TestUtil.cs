using K2RL.Kernels;

namespace K2RL.Kernels.Tests;

/// <summary>Seeded data, tolerance checks, guarded buffers, and the vector widths every kernel is run at.</summary>
internal static class TestUtil
{
    public const float Sentinel = float.NaN; // an out-of-bounds read poisons results, a write is caught

    /// <summary>Every width the kernels can run at here: the best, each narrower one, the scalar twin, and 512 (emulated where not accelerated).</summary>
    public static TheoryData<int> Widths => new() { 0, 128, 256, 512, -1 };

    public static float[] Random(int n, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            x[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        }

        return x;
    }

    /// <summary>Runs <paramref name="body"/> with the kernels forced to a width (0: the machine's best; −1: scalar).</summary>
    public static void WithWidth(int width, Action body)
    {
        SimdSelect.Override = width switch
        {
            0 => null,
            -1 => SimdWidth.Scalar,
            _ => (SimdWidth)width,
        };
        try
        {
            body();
        }
        finally
        {
            SimdSelect.Override = null;
        }
    }

    public static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float rtol, float atol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            float e = expected[i], a = actual[i];
            if (float.IsNaN(e) && float.IsNaN(a))
            {
                continue;
            }

            if (!(Math.Abs(e - a) <= atol + rtol * Math.Abs(e)))
            {
                Assert.Fail($"{what}: element {i} expected {e} got {a} (|diff| {Math.Abs(e - a)})");
            }
        }
    }

    public static void Close(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double rtol, double atol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            if (!(Math.Abs(expected[i] - actual[i]) <= atol + rtol * Math.Abs(expected[i])))
            {
                Assert.Fail($"{what}: element {i} expected {expected[i]} got {actual[i]}");
            }
        }
    }

    /// <summary>Central differences of a double-precision scalar function at x (in place, restored).</summary>
    public static double[] NumericGradient(double[] x, Func<double[], double> f, double h = 1e-5)
    {
        var grad = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            double keep = x[i];
            x[i] = keep + h;
            double up = f(x);
            x[i] = keep - h;
            double down = f(x);
            x[i] = keep;
            grad[i] = (up - down) / (2 * h);
        }

        return grad;
    }

    /// <summary>Checks both analytic gradients of loss(x, y) against central differences in double precision.</summary>
    public static void CheckGradients(float[] x, float[] y, Func<double[], double[], double> loss, float[] dx, float[] dy,
        double rtol, double atol, string what)
    {
        var xd = ToDouble(x);
        var yd = ToDouble(y);
        Close(NumericGradient(xd, v => loss(v, yd)), dx, rtol, atol, $"{what}: d/d first input vs FD");
        Close(NumericGradient(yd, v => loss(xd, v)), dy, rtol, atol, $"{what}: d/d second input vs FD");
    }

    public static double[] ToDouble(float[] x) => Array.ConvertAll(x, v => (double)v);
}

/// <summary>An exact-size span cut from a larger array whose margins hold a sentinel that must survive.</summary>
internal sealed class Guarded
{
    private const int Pad = 37;
    private readonly float[] storage;

    public Guarded(int length, float[]? init = null)
    {
        Length = length;
        storage = new float[length + 2 * Pad];
        Array.Fill(storage, TestUtil.Sentinel);
        init?.AsSpan(0, length).CopyTo(Span);
    }

    public int Length { get; }

    public Span<float> Span => storage.AsSpan(Pad, Length);

    public float[] ToArray() => Span.ToArray();

    public void AssertMarginsIntact()
    {
        for (int i = 0; i < Pad; i++)
        {
            Assert.Equal(TestUtil.Sentinel, storage[i]);
            Assert.Equal(TestUtil.Sentinel, storage[Pad + Length + i]);
        }
    }
}
