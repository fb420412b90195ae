using System.Diagnostics;
using K2RL.Kernels;

// Newton–Schulz 5 on one k2-nano expert matrix, single-threaded: process CPU time per call (best of 5 rounds of 40),
// so the figure holds up on a loaded machine better than wall time does. Also the GEMMs one NS step is made of.
var rng = new Random(1);
var g = Random(128 * 256);
var gt = Random(256 * 128);
var x = Random(128 * 256);
var a = Random(128 * 128);
var o = new float[128 * 256];
var c = new float[128 * 128];
var ws = new NewtonSchulzWorkspace();
Time("gemm nt 128x128x256 (X Xt, full)", 2.0 * 128 * 128 * 256, () => Gemm.Multiply(GemmOp.NT, c, 128, x, 256, x, 256, 128, 128, 256, false, 1));
Time("symmetric 128, k 256 (X Xt)", 2.0 * 128 * 128 * 256, () => Gemm.SymmetricProduct(c, 128, x, 256, 128, 256, 1));
Time("symmetric 128, k 128 (A A)", 2.0 * 128 * 128 * 128, () => Gemm.SymmetricProduct(c, 128, a, 128, 128, 128, 1));
Time("gemm nn 128x256x128 (P X)", 2.0 * 128 * 256 * 128, () => Gemm.Multiply(GemmOp.NN, o, 256, a, 128, x, 256, 128, 256, 128, true, 1));
Time("NS5 128x256", 105e6, () => NewtonSchulz.Orthogonalize(o, g, 128, 256, ws, 5, 1));
Time("NS5 256x128", 105e6, () => NewtonSchulz.Orthogonalize(o, gt, 256, 128, ws, 5, 1));

float[] Random(int n)
{
    var r = new float[n];
    for (int i = 0; i < n; i++)
    {
        r[i] = (float)(rng.NextDouble() - 0.5);
    }

    return r;
}

static void Time(string name, double flops, Action work)
{
    work();
    double best = double.MaxValue;
    for (int round = 0; round < 5; round++)
    {
        double t0 = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
        for (int i = 0; i < 40; i++)
        {
            work();
        }

        best = Math.Min(best, (Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds - t0) / 40);
    }

    Console.WriteLine($"{name,-36} {best * 1e6,8:F0} us CPU  {flops / best / 1e9,6:F1} GFLOP/s (nominal flops)");
}
