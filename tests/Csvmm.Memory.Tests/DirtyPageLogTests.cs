using Csvmm.Memory;

namespace Csvmm.Memory.Tests;

/// <summary>The VMM's own writes to guest RAM while a migration tracks them (KVM's dirty log does not see these).</summary>
public sealed class DirtyPageLogTests : IDisposable
{
    private const ulong Page = 0x1000;
    private readonly GuestMemory _memory = new();

    public DirtyPageLogTests()
    {
        _memory.AddRegion(new GuestAddress(0x0), 200 * Page, "ram");
        _memory.AddRegion(new GuestAddress(0x100_0000), 3 * Page, "high");
    }

    public void Dispose() => _memory.Dispose();

    private static List<int> Pages(ReadOnlySpan<ulong> bitmap)
    {
        var pages = new List<int>();
        for (int i = 0; i < bitmap.Length * 64; i++)
            if ((bitmap[i / 64] & (1UL << (i % 64))) != 0) pages.Add(i);
        return pages;
    }

    private List<int> Marked(DirtyPageLog log, int region)
    {
        var bits = new ulong[DirtyPageLog.WordsFor(_memory.Regions[region].Size)];
        log.OrInto(region, bits);
        return Pages(bits);
    }

    [Fact]
    public void Nothing_is_recorded_until_tracking_starts_and_after_it_stops()
    {
        Assert.True(_memory.TryGetSpan(new GuestAddress(5 * Page), 8, out _));
        var log = _memory.StartDirtyTracking();
        Assert.Empty(Marked(log, 0));
        _memory.StopDirtyTracking();
        Assert.Null(_memory.DirtyTracking);
        Assert.True(_memory.TryGetSpan(new GuestAddress(7 * Page), 8, out _));
        Assert.Empty(Marked(log, 0));
    }

    [Fact]
    public void Every_page_a_span_or_a_raw_write_touches_is_marked_in_its_region()
    {
        var log = _memory.StartDirtyTracking();
        _memory.GetSpan(new GuestAddress(3 * Page + 4000), 200);           // crosses into page 4
        _memory.Write(new GuestAddress(199 * Page), 1UL);                   // last page of the region
        _memory.MarkWritten(new GuestAddress(64 * Page), 2 * Page);         // a DMA: pages 64 and 65 (a second bitmap word)
        _memory.MarkWritten(new GuestAddress(0x100_0000 + Page), 1);        // the other region
        _memory.MarkWritten(new GuestAddress(0x200_0000), Page);            // outside RAM: nothing
        Assert.Equal([3, 4, 64, 65, 199], Marked(log, 0));
        Assert.Equal([1], Marked(log, 1));
        Assert.Equal(5, log.MarkedPages(0));
    }

    [Fact]
    public void Marks_are_cumulative_so_a_write_that_lands_after_a_round_is_still_sent_at_the_end()
    {
        var log = _memory.StartDirtyTracking();
        _memory.MarkWritten(new GuestAddress(10 * Page), 1);
        Assert.Equal([10], Marked(log, 0));
        Assert.Equal([10], Marked(log, 0)); // reading the marks does not clear them
    }

    [Fact]
    public void A_cmpxchg16b_the_emulator_performs_is_marked()
    {
        var log = _memory.StartDirtyTracking();
        Assert.True(_memory.TryCompareExchange128(new GuestAddress(20 * Page), 0, 1, out _));
        Assert.Equal([20], Marked(log, 0));
    }

    [Fact]
    public void Marking_from_many_threads_loses_nothing()
    {
        var log = _memory.StartDirtyTracking();
        Parallel.For(0, 200, p => _memory.MarkWritten(new GuestAddress((ulong)p * Page), 1));
        Assert.Equal(Enumerable.Range(0, 200), Marked(log, 0));
    }
}
