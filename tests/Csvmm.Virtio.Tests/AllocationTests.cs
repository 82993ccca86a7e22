using static Csvmm.Virtio.Virtq;

using Csvmm.TestSupport;

namespace Csvmm.Virtio.Tests;

[Collection(AllocationCollection.Name)]
public sealed class AllocationTests
{
    [Fact]
    public void PopWalkCompleteAndNotifyDoNotAllocate()
    {
        using var f = new QueueFixture(size: 64, eventIdx: true);
        f.SetDesc(0, 0x1_0000, 16, DescFlagNext, next: 1);
        f.SetDesc(1, QueueFixture.Indirect.Value, 2 * 16, DescFlagIndirect);
        f.WriteDesc(QueueFixture.Indirect, 0, 0x2_0000, 4096, DescFlagNext | DescFlagWrite, next: 1);
        f.WriteDesc(QueueFixture.Indirect, 1, 0x3_0000, 1, DescFlagWrite);

        ulong total = 0;
        void Round()
        {
            f.Push(0);
            while (f.Queue.TryPopAvail(out var chain))
            {
                foreach (var s in chain) total += s.Length;
                f.Queue.AddUsed(chain.Head, chain.WritableLength);
            }
            f.Queue.NeedsNotification();
            f.Queue.SetAvailEvent();
        }

        long allocated = AllocationMeter.Measure(Round, 1000);

        Assert.Equal(0, allocated);
        Assert.Equal(0ul, total % (16 + 4096 + 1));
        Assert.True(total >= 1001ul * (16 + 4096 + 1));
    }
}
