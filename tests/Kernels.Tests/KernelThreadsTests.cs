using System.Collections.Concurrent;
using K2RL.Kernels;

namespace K2RL.Kernels.Tests;

public class KernelThreadsTests
{
    private sealed class Recorder : KernelThreads.IJob
    {
        public readonly ConcurrentBag<(int Part, int Thread)> Runs = new();

        public void Run(int part, int parts)
        {
            Thread.SpinWait(20000);
            Runs.Add((part, Environment.CurrentManagedThreadId));
        }
    }

    [Theory]
    [InlineData(8, 2)]
    [InlineData(3, 3)]
    [InlineData(5, 1)]
    public void EveryPartRunsOnceOnAtMostTheThreadsAskedFor(int parts, int threads)
    {
        // Start more workers than the later calls may use.
        KernelThreads.Run(new Recorder(), 4, 4);
        for (int rep = 0; rep < 20; rep++)
        {
            var job = new Recorder();
            KernelThreads.Run(job, parts, threads);
            Assert.Equal(Enumerable.Range(0, parts), job.Runs.Select(r => r.Part).Order());
            Assert.InRange(job.Runs.Select(r => r.Thread).Distinct().Count(), 1, threads);
        }
    }

    [Fact]
    public void AFailingPartSurfacesOnTheCaller()
    {
        var e = Assert.Throws<InvalidOperationException>(() => KernelThreads.Run(new Failing(), 4, 2));
        Assert.Equal("part 3", e.Message);
    }

    private sealed class Failing : KernelThreads.IJob
    {
        public void Run(int part, int parts)
        {
            if (part == 3)
            {
                throw new InvalidOperationException("part 3");
            }
        }
    }
}
