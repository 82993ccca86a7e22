namespace Csvmm.Virtio.Tests;

/// <summary>The allocation tests run alone: other tests' threads and JIT work must not blur the count.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCollection
{
    public const string Name = "allocation";
}

internal static class AllocationMeter
{
    /// <summary>
    /// Bytes allocated on this thread by <paramref name="iterations"/> calls of <paramref name="round"/>, the least of
    /// three attempts: code that allocates does so in every attempt, while a runtime's one-off work (tiering,
    /// a stub installed on first use) shows up at most once.
    /// </summary>
    public static long Measure(Action round, int iterations)
    {
        round(); // warm up (JIT, first-use paths)
        long best = long.MaxValue;
        for (int attempt = 0; attempt < 3 && best != 0; attempt++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < iterations; i++) round();
            best = Math.Min(best, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        return best;
    }
}
