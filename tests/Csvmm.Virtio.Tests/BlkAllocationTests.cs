using System.Buffers.Binary;
using Csvmm.Block;
using Csvmm.Memory;
using static Csvmm.Virtio.Virtq;
using static Csvmm.Virtio.VirtioBlkConstants;

using Csvmm.Sys;

using Csvmm.TestSupport;

namespace Csvmm.Virtio.Tests;

/// <summary>The request path (pop, validate, vectored disk I/O, status, used ring, notification) allocates nothing.</summary>
[Collection(AllocationCollection.Name)]
public sealed class BlkAllocationTests
{
    private sealed class CountingInterrupt : IVirtioInterrupt
    {
        public int Queue, Config, NeedsReset;
        public void SignalQueue(int queue) => Queue++;
        public void SignalConfig() => Config++;
        public void SetNeedsReset() => NeedsReset++;
    }

    [Fact]
    public void ServingRequestsDoesNotAllocate()
    {
        using var image = new ScratchImage(1 << 20);
        using var disk = DiskOpener.Open(image.Path);
        using var f = new QueueFixture(size: 64, eventIdx: true);
        using var notify = EventFdHandle.Create();
        using var blk = new VirtioBlk(disk, new VirtioBlkOptions { Serial = "alloc" });
        var irq = new CountingInterrupt();
        blk.Attach(new VirtioActivation(f.Memory, blk.DeviceFeatures, [new VirtioQueue(0, f.Queue, notify)], irq));

        // 0: read 4 KiB into two buffers; 4: write 2 KiB; 8: flush; 11: get id; 14: write zeroes.
        void Header(ulong at, uint type, ulong sector)
        {
            var h = f.Memory.GetSpan(new GuestAddress(at), 16);
            BinaryPrimitives.WriteUInt32LittleEndian(h, type);
            BinaryPrimitives.WriteUInt64LittleEndian(h[8..], sector);
        }
        Header(0x1_0000, TypeIn, 8);
        f.SetDesc(0, 0x1_0000, 16, DescFlagNext, 1);
        f.SetDesc(1, 0x2_0000, 1024, DescFlagNext | DescFlagWrite, 2);
        f.SetDesc(2, 0x2_1000, 3072, DescFlagNext | DescFlagWrite, 3);
        f.SetDesc(3, 0x1_0100, 1, DescFlagWrite);
        Header(0x1_0200, TypeOut, 16);
        f.SetDesc(4, 0x1_0200, 16, DescFlagNext, 5);
        f.SetDesc(5, 0x3_0000, 1024, DescFlagNext, 6);
        f.SetDesc(6, 0x3_1000, 1024, DescFlagNext, 7);
        f.SetDesc(7, 0x1_0300, 1, DescFlagWrite);
        Header(0x1_0400, TypeFlush, 0);
        f.SetDesc(8, 0x1_0400, 16, DescFlagNext, 9);
        f.SetDesc(9, 0x1_0500, 1, DescFlagWrite);
        Header(0x1_0600, TypeGetId, 0);
        f.SetDesc(11, 0x1_0600, 16, DescFlagNext, 12);
        f.SetDesc(12, 0x4_0000, 20, DescFlagNext | DescFlagWrite, 13);
        f.SetDesc(13, 0x1_0700, 1, DescFlagWrite);
        Header(0x1_0800, TypeWriteZeroes, 0);
        var range = f.Memory.GetSpan(new GuestAddress(0x1_0900), 16);
        BinaryPrimitives.WriteUInt64LittleEndian(range, 100);
        BinaryPrimitives.WriteUInt32LittleEndian(range[8..], 8);
        f.SetDesc(14, 0x1_0800, 16, DescFlagNext, 15);
        f.SetDesc(15, 0x1_0900, 16, DescFlagNext, 16);
        f.SetDesc(16, 0x1_0A00, 1, DescFlagWrite);

        void Round()
        {
            f.Push(0);
            f.Push(4);
            f.Push(8);
            f.Push(11);
            f.Push(14);
            f.SetUsedEvent(f.UsedIdx);
            blk.ProcessQueue(0);
        }

        long allocated = AllocationMeter.Measure(Round, 500);

        Assert.Equal(0, allocated);
        long rounds = blk.Counters.Requests / 5;
        Assert.True(rounds >= 501);
        Assert.Equal(rounds * 5, blk.Counters.Requests);
        Assert.Equal(0, blk.Counters.IoErrors + blk.Counters.Malformed + blk.Counters.Unsupported);
        Assert.Equal(rounds, irq.Queue);
        Assert.Equal(StatusOk, f.Memory.GetSpan(new GuestAddress(0x1_0100), 1)[0]);
        Assert.Equal(image.Initial.AsSpan(8 * 512, 1024).ToArray(), f.Memory.GetSpan(new GuestAddress(0x2_0000), 1024).ToArray());
        Assert.Equal("alloc"u8.ToArray(), f.Memory.GetSpan(new GuestAddress(0x4_0000), 5).ToArray());
    }
    [SkippableFact]
    public void ServingRequestsThroughLinuxAioDoesNotAllocate() => ServeThroughLinuxAio(polling: false);

    /// <summary>The busy-waiting I/O thread's path: new buffers and completions found by <see cref="VirtioBlk.Poll"/>.</summary>
    [SkippableFact]
    public void PollingForRequestsAndCompletionsDoesNotAllocate() => ServeThroughLinuxAio(polling: true);

    private static void ServeThroughLinuxAio(bool polling)
    {
        using var image = new ScratchImage(1 << 20);
        using var disk = DiskOpener.Open(new DiskOpenOptions(image.Path, Cache: DiskCacheMode.None));
        Skip.IfNot(disk.DirectIo, "O_DIRECT is not available under /var/tmp");
        using var f = new QueueFixture(size: 64, eventIdx: true);
        using var notify = EventFdHandle.Create();
        using var blk = new VirtioBlk(disk, new VirtioBlkOptions { Serial = "alloc" });
        var irq = new CountingInterrupt();
        blk.Attach(new VirtioActivation(f.Memory, blk.DeviceFeatures, [new VirtioQueue(0, f.Queue, notify)], irq));
        Assert.True(blk.AsyncIo);

        void Header(ulong at, uint type, ulong sector)
        {
            var h = f.Memory.GetSpan(new GuestAddress(at), 16);
            BinaryPrimitives.WriteUInt32LittleEndian(h, type);
            BinaryPrimitives.WriteUInt64LittleEndian(h[8..], sector);
        }
        // 0: read 8 KiB into two pages; 4: read 4 KiB; 7: write 4 KiB; 10: flush (waits for the write).
        Header(0x1_0000, TypeIn, 8);
        f.SetDesc(0, 0x1_0000, 16, DescFlagNext, 1);
        f.SetDesc(1, 0x2_0000, 4096, DescFlagNext | DescFlagWrite, 2);
        f.SetDesc(2, 0x2_2000, 4096, DescFlagNext | DescFlagWrite, 3);
        f.SetDesc(3, 0x1_0100, 1, DescFlagWrite);
        Header(0x1_0200, TypeIn, 64);
        f.SetDesc(4, 0x1_0200, 16, DescFlagNext, 5);
        f.SetDesc(5, 0x2_4000, 4096, DescFlagNext | DescFlagWrite, 6);
        f.SetDesc(6, 0x1_0300, 1, DescFlagWrite);
        Header(0x1_0400, TypeOut, 128);
        f.Memory.GetSpan(new GuestAddress(0x3_0000), 4096).Fill(0x42);
        f.SetDesc(7, 0x1_0400, 16, DescFlagNext, 8);
        f.SetDesc(8, 0x3_0000, 4096, DescFlagNext, 9);
        f.SetDesc(9, 0x1_0500, 1, DescFlagWrite);
        Header(0x1_0600, TypeFlush, 0);
        f.SetDesc(10, 0x1_0600, 16, DescFlagNext, 11);
        f.SetDesc(11, 0x1_0700, 1, DescFlagWrite);

        void Round()
        {
            // Polling leaves out the flush: it would reap every completion itself.
            ushort target = (ushort)(f.UsedIdx + (polling ? 3 : 4));
            f.Push(0);
            f.Push(4);
            f.Push(7);
            if (!polling) f.Push(10);
            f.SetUsedEvent((ushort)(target - 1));
            if (polling)
            {
                while (f.UsedIdx != target) blk.Poll();
                return;
            }
            blk.ProcessQueue(0);
            while (f.UsedIdx != target) blk.ProcessCompletions();
        }

        long allocated = AllocationMeter.Measure(Round, 300);

        Assert.Equal(0, allocated);
        long rounds = blk.Counters.Requests / (polling ? 3 : 4);
        Assert.True(rounds >= 301);
        Assert.Equal(rounds * 3, blk.Counters.AsyncRequests);
        Assert.Equal(polling ? 0 : rounds, blk.Counters.FlushWaits);
        if (polling) Assert.True(blk.Counters.PolledCompletions > 0, "no completion was found in the kernel's ring");
        Assert.Equal(0, blk.Counters.IoErrors + blk.Counters.Malformed + blk.Counters.Unsupported);
        Assert.Equal(StatusOk, f.Memory.GetSpan(new GuestAddress(0x1_0100), 1)[0]);
        Assert.Equal(image.Initial.AsSpan(8 * 512, 4096).ToArray(), f.Memory.GetSpan(new GuestAddress(0x2_0000), 4096).ToArray());
        Assert.Equal(image.Initial.AsSpan(64 * 512, 4096).ToArray(), f.Memory.GetSpan(new GuestAddress(0x2_4000), 4096).ToArray());
    }
}
