using System.Buffers.Binary;
using Csvmm.Memory;

namespace Csvmm.Ide.Tests;

/// <summary>
/// What the bus-master DMA tests share: 256 KiB of RAM plus a ROM at 0xF0000, a 256-sector fake disk as the master of a
/// channel with DMA, and the driver-side steps (task-file writes, PRD tables, starting the bus master).
/// </summary>
public abstract class DmaRig : IDisposable
{
    protected const byte Ready = AtaStatus.Drdy | AtaStatus.Dsc;
    protected const uint PrdTable = 0x1000;

    private protected readonly GuestMemory _memory = new();
    private protected readonly FakeDisk _disk = new(256);
    private protected readonly RecordingIrq _irq = new();
    private protected readonly IdeChannel _channel;

    protected DmaRig()
    {
        _memory.AddRegion(new GuestAddress(0), 0x40000, "ram");
        _memory.AddRegion(new GuestAddress(0xF0000), 0x10000, "rom", readOnly: true);
        _channel = new IdeChannel(_irq, new IdeDrive(_disk), null, _memory);
    }

    public void Dispose() => _memory.Dispose();

    protected void Out(int port, byte v) => _channel.CommandBlock.Write((ulong)port, [v]);

    protected byte In(int port)
    {
        Span<byte> b = stackalloc byte[1];
        _channel.CommandBlock.Read((ulong)port, b);
        return b[0];
    }

    protected byte BmStatus()
    {
        Span<byte> b = stackalloc byte[1];
        _channel.BusMaster!.Read(2, b);
        return b[0];
    }

    /// <summary>Writes PRD entries at <paramref name="table"/> and points the bus master at it.</summary>
    protected void SetPrdAt(uint table, params (uint Address, int Length, bool Last)[] entries)
    {
        for (int i = 0; i < entries.Length; i++)
        {
            Span<byte> e = _memory.GetSpan(new GuestAddress(table + (ulong)(8 * i)), 8);
            BinaryPrimitives.WriteUInt32LittleEndian(e, entries[i].Address);
            BinaryPrimitives.WriteUInt16LittleEndian(e[4..], (ushort)entries[i].Length);
            BinaryPrimitives.WriteUInt16LittleEndian(e[6..], (ushort)(entries[i].Last ? 0x8000 : 0));
        }
        PointAt(table);
    }

    protected void SetPrd(params (uint Address, int Length, bool Last)[] entries) => SetPrdAt(PrdTable, entries);

    protected void PointAt(uint table)
    {
        Span<byte> addr = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(addr, table);
        _channel.BusMaster!.Write(4, addr);
    }

    /// <summary>Sets the direction and issues an LBA28 DMA command for <paramref name="count"/> sectors (0 = 256); the bus master is not started.</summary>
    protected void Issue(byte command, uint lba, byte count, bool toMemory)
    {
        _channel.BusMaster!.Write(0, [toMemory ? BusMasterBits.ToMemory : (byte)0]);
        Out(6, (byte)(0xE0 | (lba >> 24)));
        Out(2, count);
        Out(3, (byte)lba);
        Out(4, (byte)(lba >> 8));
        Out(5, (byte)(lba >> 16));
        Out(7, command);
    }

    /// <summary>Sets START with the direction bit.</summary>
    protected void Start(bool toMemory) =>
        _channel.BusMaster!.Write(0, [(byte)((toMemory ? BusMasterBits.ToMemory : 0) | BusMasterBits.Start)]);
}
