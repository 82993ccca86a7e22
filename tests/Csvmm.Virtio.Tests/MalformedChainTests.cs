using static Csvmm.Virtio.Virtq;

namespace Csvmm.Virtio.Tests;

/// <summary>Every malformed chain must end in a clean error: no exception, no hang, no access outside RAM.</summary>
public sealed class MalformedChainTests
{
    private static void AssertChainFails(QueueFixture f, ushort head, VirtqueueError expected, int segmentsBeforeError = -1)
    {
        var chain = f.PushPop(head);
        Assert.Equal(expected, chain.Error);
        Assert.False(chain.IsValid);
        var segments = QueueFixture.Segments(chain, out var error);
        Assert.Equal(expected, error);
        if (segmentsBeforeError >= 0) Assert.Equal(segmentsBeforeError, segments.Count);
        Assert.False(f.Queue.IsBroken); // a bad chain fails the request, not the queue
        f.Queue.AddUsed(chain.Head, 0);
    }

    [Fact]
    public void SelfLoop()
    {
        using var f = new QueueFixture(size: 16);
        f.SetDesc(4, 0x1_0000, 8, DescFlagNext, next: 4);
        AssertChainFails(f, 4, VirtqueueError.ChainTooLong, segmentsBeforeError: 16);
    }

    [Fact]
    public void TwoCycle()
    {
        using var f = new QueueFixture(size: 16);
        f.SetDesc(1, 0x1_0000, 8, DescFlagNext, next: 2);
        f.SetDesc(2, 0x1_0000, 8, DescFlagNext, next: 1);
        AssertChainFails(f, 1, VirtqueueError.ChainTooLong);
    }

    [Fact]
    public void ChainOfExactlyQueueSizeIsAcceptedOneMoreIsNot()
    {
        using var f = new QueueFixture(size: 8);
        for (ushort i = 0; i < 7; i++) f.SetDesc(i, 0x1_0000, 8, DescFlagNext, next: (ushort)(i + 1));
        f.SetDesc(7, 0x1_0000, 8);
        var ok = f.PushPop(0);
        Assert.True(ok.IsValid);
        Assert.Equal(8u, ok.DescriptorCount);

        f.SetDesc(7, 0x1_0000, 8, DescFlagNext, next: 0); // now it loops back to the head
        AssertChainFails(f, 0, VirtqueueError.ChainTooLong, segmentsBeforeError: 8);
    }

    [Fact]
    public void LoopInsideIndirectTableIsCappedAtTableLength()
    {
        using var f = new QueueFixture();
        f.SetDesc(0, QueueFixture.Indirect.Value, 4 * 16, DescFlagIndirect);
        for (ushort i = 0; i < 4; i++) f.WriteDesc(QueueFixture.Indirect, i, 0x1_0000, 8, DescFlagNext, next: (ushort)((i + 1) % 4));
        AssertChainFails(f, 0, VirtqueueError.ChainTooLong, segmentsBeforeError: 4);
    }

    [Fact]
    public void NextIndexOutOfRange()
    {
        using var f = new QueueFixture(size: 16);
        f.SetDesc(0, 0x1_0000, 8, DescFlagNext, next: 16);
        AssertChainFails(f, 0, VirtqueueError.DescriptorIndexOutOfRange, segmentsBeforeError: 1);
    }

    [Fact]
    public void NextIndexOutOfRangeOfIndirectTable()
    {
        using var f = new QueueFixture(size: 16);
        f.SetDesc(0, QueueFixture.Indirect.Value, 2 * 16, DescFlagIndirect);
        f.WriteDesc(QueueFixture.Indirect, 0, 0x1_0000, 8, DescFlagNext, next: 2); // table has 2 entries
        AssertChainFails(f, 0, VirtqueueError.DescriptorIndexOutOfRange);
    }

    [Theory]
    [InlineData(QueueFixture.RamSize, 1u)]             // starts at the end of RAM
    [InlineData(QueueFixture.RamSize - 8, 16u)]        // straddles the end of RAM
    [InlineData(0x1_0000_0000ul, 4096u)]               // in no region at all
    [InlineData(QueueFixture.RamSize - 0x1000, 0x20_0000u)] // crosses from RAM over the gap into the ROM region
    public void BufferOutsideRam(ulong addr, uint len)
    {
        using var f = new QueueFixture();
        f.SetDesc(0, addr, len);
        AssertChainFails(f, 0, VirtqueueError.BufferOutOfRange);
    }

    [Fact]
    public void AddressPlusLengthWraps()
    {
        using var f = new QueueFixture();
        f.SetDesc(0, 0xFFFF_FFFF_FFFF_F000, 0x2000);
        AssertChainFails(f, 0, VirtqueueError.AddressOverflow);
    }

    [Fact]
    public void ZeroLengthBuffer()
    {
        using var f = new QueueFixture();
        f.SetDesc(0, 0x1_0000, 16, DescFlagNext, next: 1);
        f.SetDesc(1, 0x1_0000, 0, DescFlagWrite);
        AssertChainFails(f, 0, VirtqueueError.ZeroLengthBuffer, segmentsBeforeError: 1);
    }

    [Fact]
    public void ReadableAfterWritable()
    {
        using var f = new QueueFixture();
        f.SetDesc(0, 0x1_0000, 16, DescFlagNext | DescFlagWrite, next: 1);
        f.SetDesc(1, 0x2_0000, 16);
        AssertChainFails(f, 0, VirtqueueError.ReadableAfterWritable, segmentsBeforeError: 1);
    }

    [Fact]
    public void WritableBufferInReadOnlyMemory()
    {
        using var f = new QueueFixture();
        f.SetDesc(0, QueueFixture.Rom.Value, 512, DescFlagWrite);
        AssertChainFails(f, 0, VirtqueueError.WritableBufferReadOnly);

        f.SetDesc(0, QueueFixture.Rom.Value, 512); // reading from ROM is fine
        Assert.True(f.PushPop(0).IsValid);
    }

    [Fact]
    public void NestedIndirect()
    {
        using var f = new QueueFixture();
        f.SetDesc(0, QueueFixture.Indirect.Value, 16, DescFlagIndirect);
        f.WriteDesc(QueueFixture.Indirect, 0, QueueFixture.Indirect.Value, 16, DescFlagIndirect);
        AssertChainFails(f, 0, VirtqueueError.NestedIndirect);
    }

    [Fact]
    public void IndirectWithNext()
    {
        using var f = new QueueFixture();
        f.SetDesc(0, QueueFixture.Indirect.Value, 16, DescFlagIndirect | DescFlagNext, next: 1);
        f.WriteDesc(QueueFixture.Indirect, 0, 0x1_0000, 8);
        AssertChainFails(f, 0, VirtqueueError.IndirectWithNext);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(15u)]
    [InlineData(24u)]
    [InlineData(16u * 32769)]
    public void BadIndirectLength(uint len)
    {
        using var f = new QueueFixture();
        f.SetDesc(0, QueueFixture.Indirect.Value, len, DescFlagIndirect);
        AssertChainFails(f, 0, VirtqueueError.BadIndirectLength);
    }

    [Theory]
    [InlineData(QueueFixture.RamSize - 16, 32u)]
    [InlineData(0xFFFF_FFFF_FFFF_FFF0ul, 32u)]
    public void IndirectTableOutsideRam(ulong addr, uint len)
    {
        using var f = new QueueFixture();
        f.SetDesc(0, addr, len, DescFlagIndirect);
        AssertChainFails(f, 0, VirtqueueError.IndirectTableOutOfRange);
    }

    [Fact]
    public void TotalLengthAbove4GiBMinus1()
    {
        using var f = new QueueFixture();
        // Two 3 GiB buffers need RAM that large; a NORESERVE mapping of 4 GiB + costs nothing until touched.
        const ulong gib = 1ul << 30;
        f.Memory.AddRegion(new Csvmm.Memory.GuestAddress(4 * gib), 4 * gib, "high");
        f.SetDesc(0, 4 * gib, 3 * (uint)gib, DescFlagNext, next: 1);
        f.SetDesc(1, 4 * gib, (uint)gib + 1, DescFlagWrite);
        AssertChainFails(f, 0, VirtqueueError.TotalLengthOverflow, segmentsBeforeError: 1);

        f.SetDesc(1, 4 * gib, (uint)gib - 1, DescFlagWrite); // exactly 2^32 - 1 is allowed
        var chain = f.PushPop(0);
        Assert.True(chain.IsValid);
        Assert.Equal(uint.MaxValue, chain.ReadableLength + chain.WritableLength);
    }

    [Fact]
    public void GuestRewritingTheChainAfterPopIsCaughtDuringIteration()
    {
        using var f = new QueueFixture();
        f.SetDesc(0, 0x1_0000, 16, DescFlagNext, next: 1);
        f.SetDesc(1, 0x2_0000, 16, DescFlagWrite);
        var chain = f.PushPop(0);
        Assert.True(chain.IsValid);

        f.SetDesc(1, 0x2_0000, 16, DescFlagWrite | DescFlagNext, next: 0); // now readable after writable
        var segments = QueueFixture.Segments(chain, out var error);
        Assert.Equal(VirtqueueError.ReadableAfterWritable, error);
        Assert.Equal(2, segments.Count);
    }
}
