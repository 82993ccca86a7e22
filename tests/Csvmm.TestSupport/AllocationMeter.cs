namespace Csvmm.TestSupport;

/// <summary>Counts the bytes code allocates on the calling thread (the hot-path tests' "allocates nothing").</summary>
public static class AllocationMeter
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
