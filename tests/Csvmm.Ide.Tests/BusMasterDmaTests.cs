using System.Buffers.Binary;
using Csvmm.Block;
using Csvmm.Memory;

namespace Csvmm.Ide.Tests;

public sealed class BusMasterDmaTests : DmaRig
{
    private void Dma(byte command, uint lba, byte count, bool toMemory)
    {
        Issue(command, lba, count, toMemory);
        Assert.False(_irq.Level); // nothing happens until the bus master starts
        Start(toMemory);
    }

    [Fact]
    public void Read_dma_scatters_over_a_multi_entry_prd_table()
    {
        SetPrd((0x2000, 512, false), (0x8000, 1024, false), (0x3000, 512, true));
        Dma(AtaCommand.ReadDma, 7, 4, toMemory: true);
        Assert.True(_irq.Level);
        Assert.Equal(BusMasterBits.Interrupt, BmStatus() & 0x07);
        Assert.Equal(Ready, In(7));
        Assert.Equal(_disk.Data.AsSpan(7 * 512, 512).ToArray(), _memory.GetSpan(new GuestAddress(0x2000), 512).ToArray());
        Assert.Equal(_disk.Data.AsSpan(8 * 512, 1024).ToArray(), _memory.GetSpan(new GuestAddress(0x8000), 1024).ToArray());
        Assert.Equal(_disk.Data.AsSpan(10 * 512, 512).ToArray(), _memory.GetSpan(new GuestAddress(0x3000), 512).ToArray());
        _channel.BusMaster!.Write(2, [BusMasterBits.Interrupt]);
        Assert.Equal(0, BmStatus() & 0x07);
    }

    [Fact]
    public void Write_dma_gathers_into_the_disk()
    {
        _memory.GetSpan(new GuestAddress(0x4000), 512).Fill(0xAB);
        _memory.GetSpan(new GuestAddress(0x5000), 512).Fill(0xCD);
        SetPrd((0x4000, 512, false), (0x5000, 512, true));
        Dma(AtaCommand.WriteDma, 100, 2, toMemory: false);
        Assert.Equal(Ready, In(7));
        Assert.All(_disk.Data.AsSpan(100 * 512, 512).ToArray(), b => Assert.Equal(0xAB, b));
        Assert.All(_disk.Data.AsSpan(101 * 512, 512).ToArray(), b => Assert.Equal(0xCD, b));
    }

    [Theory]
    [InlineData(0x7FFFF000u)] // outside RAM
    [InlineData(0x3FF00u)]    // runs off the end of RAM
    [InlineData(0xF8000u)]    // a disk read into ROM
    public void Bad_prd_buffers_fail_the_command_without_touching_memory(uint address)
    {
        byte[] rom = _memory.GetSpan(new GuestAddress(0xF8000), 512).ToArray();
        SetPrd((address, 512, true));
        Dma(AtaCommand.ReadDma, 0, 1, toMemory: true);
        Assert.True(_irq.Level);
        Assert.Equal(BusMasterBits.Error | BusMasterBits.Interrupt, BmStatus() & 0x07);
        Assert.Equal(Ready | AtaStatus.Err, In(7));
        Assert.Equal(AtaError.Abrt, In(1));
        Assert.Equal(rom, _memory.GetSpan(new GuestAddress(0xF8000), 512).ToArray());
    }

    [Fact]
    public void A_prd_table_shorter_than_the_transfer_is_an_error()
    {
        SetPrd((0x2000, 512, true));
        Dma(AtaCommand.ReadDma, 0, 2, toMemory: true);
        Assert.Equal(BusMasterBits.Error, BmStatus() & BusMasterBits.Error);
        Assert.Equal(Ready | AtaStatus.Err, In(7));
    }

    [Fact]
    public void Dma_to_a_read_only_disk_and_past_the_end_abort_before_the_bus_master_runs()
    {
        Out(6, 0xE0);
        Out(2, 1);
        Out(3, 0);
        Out(4, 1); // lba 256 = past the end
        Out(5, 0);
        Out(7, AtaCommand.ReadDma);
        Assert.Equal(Ready | AtaStatus.Err, In(7));
        Assert.Equal(AtaError.Idnf, In(1));

        var readOnly = new FakeDisk(8, readOnly: true);
        byte before = readOnly.Data[0];
        var channel = new IdeChannel(new RecordingIrq(), new IdeDrive(readOnly), null, _memory);
        SetPrdOn(channel);
        channel.CommandBlock.Write(6, [0xE0]);
        channel.CommandBlock.Write(2, [1]);
        channel.CommandBlock.Write(3, [0]);
        channel.CommandBlock.Write(4, [0]);
        channel.CommandBlock.Write(7, [AtaCommand.WriteDma]);
        channel.BusMaster!.Write(0, [BusMasterBits.Start]);
        Span<byte> b = stackalloc byte[1];
        channel.CommandBlock.Read(1, b);
        Assert.Equal(AtaError.Abrt, b[0]);
        Assert.Equal(0, BmStatusOf(channel) & BusMasterBits.Interrupt); // the bus master never ran
        Assert.Equal(before, readOnly.Data[0]);
    }

    private void SetPrdOn(IdeChannel channel)
    {
        SetPrd((0x2000, 512, true));
        channel.BusMaster!.Write(4, [unchecked((byte)PrdTable), (byte)(PrdTable >> 8), 0, 0]);
    }

    private static byte BmStatusOf(IdeChannel channel)
    {
        Span<byte> b = stackalloc byte[1];
        channel.BusMaster!.Read(2, b);
        return b[0];
    }

    [Fact]
    public void Read_dma_ext_addresses_past_lba28()
    {
        var disk = FakeDisk.Sparse((1UL << 28) + 4);
        var channel = new IdeChannel(_irq, new IdeDrive(disk), null, _memory);
        SetPrdOn(channel);
        ulong lba = (1UL << 28) + 2;
        foreach (var (port, value) in new (int, byte)[] { (6, 0x40), (2, 0), (3, (byte)(lba >> 24)), (4, 0), (5, 0), (2, 1), (3, (byte)lba), (4, (byte)(lba >> 8)), (5, (byte)(lba >> 16)) })
            channel.CommandBlock.Write((ulong)port, [value]);
        channel.CommandBlock.Write(7, [AtaCommand.ReadDmaExt]);
        channel.BusMaster!.Write(0, [BusMasterBits.ToMemory | BusMasterBits.Start]);
        Assert.Equal(BusMasterBits.Interrupt, BmStatusOf(channel) & 0x07);
        Assert.All(_memory.GetSpan(new GuestAddress(0x2000), 512).ToArray(), v => Assert.Equal((byte)lba, v));
    }

    [Fact]
    public void Identify_advertises_dma_and_set_features_selects_a_mode()
    {
        Out(1, 0x03);
        Out(2, 0x45); // UDMA5
        Out(7, AtaCommand.SetFeatures);
        Assert.Equal(Ready, In(7));
        Out(7, AtaCommand.IdentifyDevice);
        In(7);
        var id = new byte[512];
        for (int i = 0; i < 512; i += 2) _channel.CommandBlock.Read(0, id.AsSpan(i, 2));
        Assert.Equal(0x0100, BinaryPrimitives.ReadUInt16LittleEndian(id.AsSpan(49 * 2)) & 0x0100);
        Assert.Equal(0x203F, BinaryPrimitives.ReadUInt16LittleEndian(id.AsSpan(88 * 2)));
    }

    [Fact]
    public void Without_dma_memory_the_dma_commands_abort()
    {
        var h = new Harness(new FakeDisk(8));
        Assert.Null(h.Channel.BusMaster);
        h.Lba28(0, 1);
        h.Command(AtaCommand.ReadDma);
        Assert.Equal(AtaError.Abrt, h.In(1));
        h.Out(1, 0x03);
        h.Out(2, 0x42);
        h.Command(AtaCommand.SetFeatures);
        Assert.Equal(AtaError.Abrt, h.In(1));
    }
}
