using System.Buffers.Binary;
using Csvmm.Memory;

namespace Csvmm.Virtio.Tests;

/// <summary>
/// Fake guest RAM (1 MiB at 0, plus a 64 KiB read-only region at 0x20_0000) with a split virtqueue laid out
/// the way a driver would: descriptors at 0x1000, avail at 0x2000, used at 0x3000, data from 0x1_0000.
/// </summary>
internal sealed class QueueFixture : IDisposable
{
    public const ulong RamSize = 1 << 20;
    public static readonly GuestAddress Desc = new(0x1000);
    public static readonly GuestAddress Avail = new(0x2000);
    public static readonly GuestAddress Used = new(0x3000);
    public static readonly GuestAddress Data = new(0x1_0000);
    public static readonly GuestAddress Indirect = new(0x8000);
    public static readonly GuestAddress Rom = new(0x20_0000);

    public GuestMemory Memory { get; } = new();
    public ushort Size { get; }
    public SplitQueue Queue { get; }
    private ushort _availIdx;

    public QueueFixture(ushort size = 16, bool eventIdx = false, ushort startIndex = 0)
    {
        Memory.AddRegion(GuestAddress.Zero, RamSize, "ram");
        Memory.AddRegion(Rom, 0x1_0000, "rom", readOnly: true);
        Size = size;
        var error = SplitQueue.TryCreate(Memory, new SplitQueueConfig(size, Desc, Avail, Used, eventIdx), out var queue);
        Assert.Equal(VirtqueueError.None, error);
        Queue = queue!;
        if (startIndex != 0)
        {
            Queue.RestoreState(startIndex, startIndex);
            _availIdx = startIndex;
            WriteU16(Avail + 2, startIndex);
            WriteU16(Used + 2, startIndex);
        }
    }

    public void SetDesc(int index, ulong addr, uint len, ushort flags = 0, ushort next = 0) =>
        WriteDesc(Desc, index, addr, len, flags, next);

    public void WriteDesc(GuestAddress table, int index, ulong addr, uint len, ushort flags = 0, ushort next = 0)
    {
        var raw = Memory.GetSpan(table + (ulong)(16 * index), 16);
        BinaryPrimitives.WriteUInt64LittleEndian(raw, addr);
        BinaryPrimitives.WriteUInt32LittleEndian(raw[8..], len);
        BinaryPrimitives.WriteUInt16LittleEndian(raw[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(raw[14..], next);
    }

    /// <summary>Puts <paramref name="head"/> in the next avail slot and publishes it.</summary>
    public void Push(ushort head)
    {
        WriteU16(Avail + 4 + 2 * (ulong)(_availIdx % Size), head);
        _availIdx++;
        WriteU16(Avail + 2, _availIdx);
    }

    public void SetAvailIdx(ushort idx) => WriteU16(Avail + 2, idx);
    public void SetAvailFlags(ushort flags) => WriteU16(Avail, flags);
    public void SetUsedEvent(ushort value) => WriteU16(Avail + 4 + 2 * (ulong)Size, value);
    public ushort UsedIdx => ReadU16(Used + 2);
    public ushort AvailEvent => ReadU16(Used + 4 + 8 * (ulong)Size);

    public (uint Id, uint Len) UsedElement(ushort ringIndex)
    {
        var raw = Memory.GetSpan(Used + 4 + 8 * (ulong)(ringIndex % Size), 8);
        return (BinaryPrimitives.ReadUInt32LittleEndian(raw), BinaryPrimitives.ReadUInt32LittleEndian(raw[4..]));
    }

    /// <summary>Pushes a chain head and pops it, asserting the pop succeeds.</summary>
    public DescriptorChain PushPop(ushort head)
    {
        Push(head);
        Assert.True(Queue.TryPopAvail(out var chain));
        return chain;
    }

    public static List<DescriptorSegment> Segments(DescriptorChain chain, out VirtqueueError error)
    {
        var list = new List<DescriptorSegment>();
        var e = chain.GetEnumerator();
        while (e.MoveNext()) list.Add(e.Current);
        error = e.Error;
        return list;
    }

    private void WriteU16(GuestAddress a, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(Memory.GetSpan(a, 2), v);
    private ushort ReadU16(GuestAddress a) => BinaryPrimitives.ReadUInt16LittleEndian(Memory.GetSpan(a, 2));

    public void Dispose() => Memory.Dispose();
}
