using Csvmm.Memory;
using static Csvmm.Virtio.Virtq;

namespace Csvmm.Virtio.Tests;

public sealed class SplitQueueConfigTests
{
    private static VirtqueueError Create(ushort size, ulong desc, ulong avail, ulong used)
    {
        using var memory = new GuestMemory();
        memory.AddRegion(GuestAddress.Zero, 1 << 20, "ram");
        memory.AddRegion(new GuestAddress(0x20_0000), 0x1_0000, "rom", readOnly: true);
        var error = SplitQueue.TryCreate(memory,
            new SplitQueueConfig(size, new GuestAddress(desc), new GuestAddress(avail), new GuestAddress(used), false), out var q);
        Assert.Equal(error == VirtqueueError.None, q is not null);
        return error;
    }

    [Theory]
    [InlineData(1, VirtqueueError.None)]
    [InlineData(256, VirtqueueError.None)]
    [InlineData(0, VirtqueueError.InvalidQueueSize)]
    [InlineData(3, VirtqueueError.InvalidQueueSize)]
    [InlineData(65535, VirtqueueError.InvalidQueueSize)]
    public void QueueSizeMustBeAPowerOfTwo(int size, VirtqueueError expected) =>
        Assert.Equal(expected, Create((ushort)size, 0x1000, 0x2000, 0x3000));

    [Fact]
    public void MaximumQueueSizeFitsWhenRingsDo() =>
        Assert.Equal(VirtqueueError.None, Create(32768, 0x1_0000, 0x9_0000, 0xA_0000));

    [Theory]
    [InlineData(0x1008, 0x2000, 0x3000)]
    [InlineData(0x1000, 0x2001, 0x3000)]
    [InlineData(0x1000, 0x2000, 0x3002)]
    public void MisalignedRingsAreRefused(ulong desc, ulong avail, ulong used) =>
        Assert.Equal(VirtqueueError.MisalignedRing, Create(16, desc, avail, used));

    [Theory]
    [InlineData(0xFFF10, 0x2000, 0x3000)]              // desc table runs past the end of RAM
    [InlineData(0x1000, 0xFFFFE, 0x3000)]              // avail ring straddles the end of RAM
    [InlineData(0x1000, 0x2000, 0xFFFF_FFFF_FFFF_FFF0)] // used ring wraps the address space
    [InlineData(0x1000, 0x2000, 0x50_0000)]            // used ring in no region
    public void RingsOutsideRamAreRefused(ulong desc, ulong avail, ulong used) =>
        Assert.Equal(VirtqueueError.RingOutOfRange, Create(16, desc, avail, used));

    [Fact]
    public void UsedRingInReadOnlyMemoryIsRefused() =>
        Assert.Equal(VirtqueueError.RingReadOnly, Create(16, 0x1000, 0x2000, 0x20_0000));
}

public sealed class SplitQueueTests
{
    [Fact]
    public void EmptyRingPopsNothing()
    {
        using var f = new QueueFixture();
        Assert.False(f.Queue.TryPopAvail(out _));
        Assert.False(f.Queue.IsBroken);
    }

    [Fact]
    public void SingleDescriptorRoundTrip()
    {
        using var f = new QueueFixture();
        f.SetDesc(3, QueueFixture.Data.Value, 512, DescFlagWrite);
        var chain = f.PushPop(3);

        Assert.True(chain.IsValid);
        Assert.Equal(3, chain.Head);
        Assert.Equal(1u, chain.DescriptorCount);
        Assert.Equal(0u, chain.ReadableLength);
        Assert.Equal(512u, chain.WritableLength);
        var segments = QueueFixture.Segments(chain, out var error);
        Assert.Equal(VirtqueueError.None, error);
        Assert.Equal([new DescriptorSegment(QueueFixture.Data, 512, true)], segments);
        Assert.False(f.Queue.TryPopAvail(out _));

        Assert.True(segments[0].TryGetSpan(f.Memory, out var span));
        span.Fill(0xAB);
        Assert.Equal(0xAB, f.Memory.Read<byte>(QueueFixture.Data + 511));

        f.Queue.AddUsed(chain.Head, 512);
        Assert.Equal(1, f.UsedIdx);
        Assert.Equal((3u, 512u), f.UsedElement(0));
    }

    [Fact]
    public void ChainedDescriptorsAreWalkedInOrder()
    {
        using var f = new QueueFixture();
        // A virtio-blk style request: header (readable), data (writable), status (writable).
        f.SetDesc(0, 0x1_0000, 16, DescFlagNext, next: 5);
        f.SetDesc(5, 0x2_0000, 4096, DescFlagNext | DescFlagWrite, next: 2);
        f.SetDesc(2, 0x3_0000, 1, DescFlagWrite);
        var chain = f.PushPop(0);

        Assert.True(chain.IsValid);
        Assert.Equal(3u, chain.DescriptorCount);
        Assert.Equal(16u, chain.ReadableLength);
        Assert.Equal(4097u, chain.WritableLength);
        var segments = QueueFixture.Segments(chain, out var error);
        Assert.Equal(VirtqueueError.None, error);
        Assert.Equal(
            [new(new GuestAddress(0x1_0000), 16, false), new(new GuestAddress(0x2_0000), 4096, true), new(new GuestAddress(0x3_0000), 1, true)],
            segments);

        int n = 0;
        foreach (var s in chain) n++;
        Assert.Equal(3, n);
    }

    [Fact]
    public void IndirectTableIsWalked()
    {
        using var f = new QueueFixture();
        f.SetDesc(0, 0x1_0000, 16, DescFlagNext, next: 1); // a direct descriptor may precede the indirect one
        f.SetDesc(1, QueueFixture.Indirect.Value, 3 * 16, DescFlagIndirect);
        f.WriteDesc(QueueFixture.Indirect, 0, 0x2_0000, 100, DescFlagNext, next: 2);
        f.WriteDesc(QueueFixture.Indirect, 2, 0x3_0000, 200, DescFlagNext | DescFlagWrite, next: 1);
        f.WriteDesc(QueueFixture.Indirect, 1, 0x4_0000, 300, DescFlagWrite);
        var chain = f.PushPop(0);

        Assert.Equal(VirtqueueError.None, chain.Error);
        Assert.Equal(4u, chain.DescriptorCount);
        Assert.Equal(116u, chain.ReadableLength);
        Assert.Equal(500u, chain.WritableLength);
        var segments = QueueFixture.Segments(chain, out _);
        Assert.Equal([0x1_0000ul, 0x2_0000, 0x3_0000, 0x4_0000], segments.Select(s => s.Address.Value));
    }

    [Fact]
    public void RingIndicesWrapAroundAt65536()
    {
        using var f = new QueueFixture(size: 4, startIndex: 0xFFFE);
        for (ushort i = 0; i < 4; i++) f.SetDesc(i, 0x1_0000 + i * 0x1000ul, (uint)(64 + i), DescFlagWrite);

        // Four requests straddle 0xFFFF -> 0x0000; avail.idx ends at 2.
        for (ushort i = 0; i < 4; i++) f.Push(i);
        for (ushort i = 0; i < 4; i++)
        {
            Assert.True(f.Queue.TryPopAvail(out var chain));
            Assert.Equal(i, chain.Head);
            f.Queue.AddUsed(chain.Head, 64u + i);
        }
        Assert.False(f.Queue.TryPopAvail(out _));
        Assert.False(f.Queue.IsBroken);
        Assert.Equal(2, f.Queue.NextAvail);
        Assert.Equal(2, f.UsedIdx);
        // Slot = index mod size: 0xFFFE -> 2, 0xFFFF -> 3, 0 -> 0, 1 -> 1.
        Assert.Equal((0u, 64u), f.UsedElement(2));
        Assert.Equal((1u, 65u), f.UsedElement(3));
        Assert.Equal((2u, 66u), f.UsedElement(0));
        Assert.Equal((3u, 67u), f.UsedElement(1));
    }

    [Fact]
    public void FullRingAcrossWrapIsAccepted()
    {
        using var f = new QueueFixture(size: 8, startIndex: 0xFFFC);
        f.SetDesc(0, 0x1_0000, 8);
        f.SetAvailIdx(0x0004); // exactly size (8) ahead, across the wrap
        for (int i = 0; i < 8; i++) Assert.True(f.Queue.TryPopAvail(out _));
        Assert.False(f.Queue.TryPopAvail(out _));
        Assert.False(f.Queue.IsBroken);
    }

    [Theory]
    [InlineData(0, 17)]
    [InlineData(0xFFF8, 0x0009)] // 17 ahead across the wrap
    [InlineData(100, 99)]        // went backwards = 65535 ahead
    public void AvailIndexTooFarAheadBreaksTheQueue(int start, int availIdx)
    {
        using var f = new QueueFixture(size: 16, startIndex: (ushort)start);
        f.SetDesc(0, 0x1_0000, 8);
        f.SetAvailIdx((ushort)availIdx);
        Assert.False(f.Queue.TryPopAvail(out _));
        Assert.Equal(VirtqueueError.AvailIndexTooFar, f.Queue.Error);
        f.SetAvailIdx((ushort)(start + 1));
        Assert.False(f.Queue.TryPopAvail(out _)); // stays broken
    }

    [Fact]
    public void HeadIndexOutOfRangeBreaksTheQueue()
    {
        using var f = new QueueFixture(size: 16);
        f.Push(16);
        Assert.False(f.Queue.TryPopAvail(out _));
        Assert.Equal(VirtqueueError.HeadIndexOutOfRange, f.Queue.Error);
    }

    [Fact]
    public void AddUsedRefusesAHeadBeyondTheQueue()
    {
        using var f = new QueueFixture(size: 16);
        Assert.Throws<ArgumentOutOfRangeException>(() => f.Queue.AddUsed(16, 0));
    }

    [Fact]
    public void NoInterruptFlagSuppressesNotification()
    {
        using var f = new QueueFixture();
        f.SetDesc(0, 0x1_0000, 8);
        var chain = f.PushPop(0);
        f.Queue.AddUsed(chain.Head, 0);
        Assert.True(f.Queue.NeedsNotification());
        f.SetAvailFlags(AvailFlagNoInterrupt);
        Assert.False(f.Queue.NeedsNotification());
        f.SetAvailFlags(0);
        Assert.True(f.Queue.NeedsNotification());
    }

    [Fact]
    public void EventIdxIgnoresNoInterruptFlag()
    {
        using var f = new QueueFixture(eventIdx: true);
        f.SetAvailFlags(AvailFlagNoInterrupt);
        f.SetDesc(0, 0x1_0000, 8);
        f.Queue.AddUsed(f.PushPop(0).Head, 0);
        Assert.True(f.Queue.NeedsNotification()); // first decision always notifies
        f.SetUsedEvent(1);
        f.Queue.AddUsed(f.PushPop(0).Head, 0);     // used.idx 1 -> 2 crosses used_event + 1 = 2
        Assert.True(f.Queue.NeedsNotification());
    }

    [Theory]
    // The first decision happens at used.idx = start + 1 ("old"); then `completions` more are added ("new").
    // Notify iff used_event lies in [old, new) modulo 2^16.
    [InlineData(0, 1, 1, true)]
    [InlineData(0, 5, 1, false)]
    [InlineData(0, 5, 5, true)]
    [InlineData(0, 6, 5, false)]
    [InlineData(0, 0, 3, false)]            // used_event already behind the window
    [InlineData(0xFFFD, 0xFFFF, 2, true)]   // window 0xFFFE..0xFFFF, new wraps to 0
    [InlineData(0xFFFD, 0x0000, 2, false)]  // new = 0x0000 has not passed used_event 0
    [InlineData(0xFFFD, 0x0000, 3, true)]   // new = 0x0001 has
    [InlineData(0xFFFD, 0xFFFD, 3, false)]  // used_event before the window
    public void EventIdxNotificationDecisions(int start, int usedEvent, int completions, bool expected)
    {
        using var f = new QueueFixture(size: 16, eventIdx: true, startIndex: (ushort)start);
        f.SetDesc(0, 0x1_0000, 8);
        f.Queue.AddUsed(f.PushPop(0).Head, 0);
        Assert.True(f.Queue.NeedsNotification()); // first decision always notifies

        f.SetUsedEvent((ushort)usedEvent);
        for (int i = 0; i < completions; i++) f.Queue.AddUsed(f.PushPop(0).Head, 0);
        Assert.Equal(expected, f.Queue.NeedsNotification());
        Assert.False(f.Queue.NeedsNotification()); // nothing new since the last decision
    }

    [Fact]
    public void NeedEventMatchesTheSpecDefinition()
    {
        // Notify iff used_event is in [old, new) i.e. new - 1 - used_event < new - old (mod 2^16).
        Assert.True(NeedEvent(eventIdx: 4, newIdx: 5, oldIdx: 4));
        Assert.False(NeedEvent(eventIdx: 5, newIdx: 5, oldIdx: 4));
        Assert.False(NeedEvent(eventIdx: 3, newIdx: 5, oldIdx: 4));
        Assert.True(NeedEvent(eventIdx: 0xFFFF, newIdx: 1, oldIdx: 0xFFFE));
        Assert.True(NeedEvent(eventIdx: 0, newIdx: 1, oldIdx: 0xFFFE));
        Assert.False(NeedEvent(eventIdx: 1, newIdx: 1, oldIdx: 0xFFFE));
        Assert.False(NeedEvent(eventIdx: 7, newIdx: 7, oldIdx: 7)); // nothing new
    }

    [Fact]
    public void SetAvailEventPublishesNextAvailOnlyWithEventIdx()
    {
        using var on = new QueueFixture(eventIdx: true, startIndex: 0xFFFF);
        on.SetDesc(0, 0x1_0000, 8);
        on.PushPop(0);
        on.Queue.SetAvailEvent();
        Assert.Equal(0, on.AvailEvent);
        on.PushPop(0);
        on.Queue.SetAvailEvent();
        Assert.Equal(1, on.AvailEvent);

        using var off = new QueueFixture(eventIdx: false);
        off.SetDesc(0, 0x1_0000, 8);
        off.PushPop(0);
        off.Queue.SetAvailEvent();
        Assert.Equal(0, off.AvailEvent);
    }
}
