using K2RL.Kernels;

namespace K2RL.Kernels.Tests;

/// <summary>
/// Tests that count this thread's allocations around calls on the shared pool. They run alone: a test on another
/// thread holding the pool makes these calls run inline, and the first inline call on a thread allocates its
/// thread-local state, which is not what these tests measure.
/// </summary>
[CollectionDefinition(nameof(SharedPoolAllocationTests), DisableParallelization = true)]
public sealed class SharedPoolAllocationCollection;

[Collection(nameof(SharedPoolAllocationTests))]
public class SharedPoolAllocationTests
{
    [Fact]
    public void AParallelGemmAllocatesNothing()
    {
        const int m = 300, n = 200, k = 256; // 31 MFLOP: several parts on every thread the shared pool has
        var a = TestUtil.Random(m * k, 1);
        var b = TestUtil.Random(k * n, 2);
        var c = new float[m * n];
        Gemm.Multiply(GemmOp.NN, c, a, b, m, n, k); // first call: packing buffers, the job, the pool's workers
        ForkJoinPool.Shared.For(1, static (_, _) => { }); // and this thread's thread-statics for the inline path (pool busy)
        // Up to three rounds of 50 calls; one round that allocates nothing shows the path is clean (a per-call allocation
        // would show in every round). The rounds tolerate a one-off allocation of the runtime's on this thread: once,
        // in CI under load 11, a single round counted 8,008 bytes.
        var rounds = new long[3];
        for (int r = 0; r < rounds.Length; r++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 50; i++)
            {
                Gemm.Multiply(GemmOp.NN, c, a, b, m, n, k);
            }

            rounds[r] = GC.GetAllocatedBytesForCurrentThread() - before;
            if (rounds[r] == 0)
            {
                return;
            }
        }

        Assert.Fail($"every round of 50 parallel GEMMs allocated on the calling thread: {string.Join(", ", rounds)} bytes");
    }
}
