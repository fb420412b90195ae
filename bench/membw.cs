// Streaming read bandwidth of this machine (docs/BENCHMARKS.md "Rollout"): a Vector256 sum over a float array,
// 1 and 2 threads, best of N passes, twice each. Usage: dotnet run -c Release bench/membw.cs -- [MB=256] [passes=10]
// (256 MB streams from DRAM; 24 MB fits the 32 MB L3).
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

int mb = args.Length > 0 ? int.Parse(args[0]) : 256;
int passes = args.Length > 1 ? int.Parse(args[1]) : 10;
int n = (int)((long)mb * 1024 * 1024 / 4);
var data = GC.AllocateUninitializedArray<float>(n, pinned: true);
for (int i = 0; i < n; i++)
{
    data[i] = i & 7;
}

foreach (int threads in new[] { 1, 2, 1, 2 })
{
    double best = 0;
    float sink = 0;
    for (int p = 0; p < passes; p++)
    {
        var sw = Stopwatch.StartNew();
        if (threads == 1)
        {
            sink += Sum(data);
        }
        else
        {
            float upper = 0;
            var helper = new Thread(() => upper = Sum(data.AsSpan(n / 2)));
            helper.Start();
            sink += Sum(data.AsSpan(0, n / 2));
            helper.Join();
            sink += upper;
        }

        best = Math.Max(best, n * 4.0 / sw.Elapsed.TotalSeconds / 1e9);
    }

    Console.WriteLine($"threads {threads}: best {best:F1} GB/s over {passes} passes of {mb} MB (sink {sink})");
}

static float Sum(ReadOnlySpan<float> x)
{
    var v = MemoryMarshal.Cast<float, Vector256<float>>(x);
    Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
    int i = 0;
    for (; i + 4 <= v.Length; i += 4)
    {
        a0 += v[i];
        a1 += v[i + 1];
        a2 += v[i + 2];
        a3 += v[i + 3];
    }

    for (; i < v.Length; i++)
    {
        a0 += v[i];
    }

    return Vector256.Sum(a0 + a1 + a2 + a3);
}
