using System.Buffers.Binary;
using Csvmm.Devices;
using Csvmm.Devices.Pci;
using Csvmm.Memory;

namespace Csvmm.Ide.Tests;

public sealed class PiixIdeTests : IDisposable
{
    private const byte Ready = AtaStatus.Drdy | AtaStatus.Dsc;
    private const ulong PrdTable = 0x1000;
    private const int Bmiba = 0x20;

    private readonly GuestMemory _memory = new();
    private readonly FakeDisk _primaryDisk = new(64);
    private readonly FakeDisk _secondaryDisk = new(64);
    private readonly RecordingIrq _irq14 = new();
    private readonly RecordingIrq _irq15 = new();
    private readonly IdeChannel _primary;
    private readonly IdeChannel _secondary;
    private readonly PiixIde _ide;

    public PiixIdeTests()
    {
        _memory.AddRegion(new GuestAddress(0), 0x40000, "ram");
        _primary = new IdeChannel(_irq14, new IdeDrive(_primaryDisk), null, _memory);
        _secondary = new IdeChannel(_irq15, new IdeDrive(_secondaryDisk), null, _memory);
        _ide = new PiixIde(_primary, _secondary);
    }

    public void Dispose() => _memory.Dispose();

    // ---- helpers ------------------------------------------------------------------------------------------

    private static uint ReadConfig(IPciFunction f, int offset, int width)
    {
        Span<byte> b = stackalloc byte[4];
        f.ReadConfig(offset, b[..width]);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private static void WriteConfig(IPciFunction f, int offset, int width, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        f.WriteConfig(offset, b[..width]);
    }

    private uint Bar(ulong offset, int width)
    {
        Span<byte> b = stackalloc byte[4];
        _ide.GetBarDevice(PiixIde.BusMasterBar)!.Read(offset, b[..width]);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private void BarWrite(ulong offset, int width, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        _ide.GetBarDevice(PiixIde.BusMasterBar)!.Write(offset, b[..width]);
    }

    private static void Out(IdeChannel c, int port, byte v) => c.CommandBlock.Write((ulong)port, [v]);

    private static byte In(IdeChannel c, int port)
    {
        Span<byte> b = stackalloc byte[1];
        c.CommandBlock.Read((ulong)port, b);
        return b[0];
    }

    private void SetPrd(ulong bmBase, uint buffer, int length)
    {
        Span<byte> e = _memory.GetSpan(new GuestAddress(PrdTable + bmBase * 0x100), 8);
        BinaryPrimitives.WriteUInt32LittleEndian(e, buffer);
        BinaryPrimitives.WriteUInt16LittleEndian(e[4..], (ushort)length);
        BinaryPrimitives.WriteUInt16LittleEndian(e[6..], 0x8000);
        BarWrite(bmBase + 4, 4, (uint)(PrdTable + bmBase * 0x100));
    }

    /// <summary>Programs a READ DMA of <paramref name="count"/> sectors from LBA <paramref name="lba"/> and starts the bus master.</summary>
    private void StartReadDma(IdeChannel channel, ulong bmBase, uint lba, byte count)
    {
        BarWrite(bmBase, 1, BusMasterBits.ToMemory);
        Out(channel, 6, (byte)(0xE0 | (lba >> 24)));
        Out(channel, 2, count);
        Out(channel, 3, (byte)lba);
        Out(channel, 4, (byte)(lba >> 8));
        Out(channel, 5, (byte)(lba >> 16));
        Out(channel, 7, AtaCommand.ReadDma);
        BarWrite(bmBase, 1, BusMasterBits.ToMemory | BusMasterBits.Start);
    }

    private void EnableBusMaster(bool enable) =>
        WriteConfig(_ide, PciConfigSpace.CommandOffset, 2,
            PciConfigSpace.CommandIoSpace | (enable ? PciConfigSpace.CommandBusMaster : 0u));

    // ---- configuration space ------------------------------------------------------------------------------

    [Fact]
    public void Config_space_identifies_a_piix3_ide_function_in_legacy_mode()
    {
        Assert.Equal(0x8086u, ReadConfig(_ide, 0x00, 2));
        Assert.Equal(0x7010u, ReadConfig(_ide, 0x02, 2));
        Assert.Equal(0x0000u, ReadConfig(_ide, 0x04, 2)); // command: nothing decodes at reset
        Assert.Equal(0x0280u, ReadConfig(_ide, 0x06, 2)); // fast back-to-back, DEVSEL medium
        Assert.Equal(0x01_01_80_00u, ReadConfig(_ide, 0x08, 4)); // class 01/01/80, revision 0
        Assert.Equal(0x00u, ReadConfig(_ide, 0x0E, 1)); // header type 0 (function 0 carries the multi-function bit)
        Assert.Equal(0x00u, ReadConfig(_ide, PciConfigSpace.InterruptPinOffset, 1));
        for (int bar = 0; bar < 4; bar++) Assert.Equal(0u, ReadConfig(_ide, 0x10 + 4 * bar, 4));
        Assert.Equal(0x0000_0001u, ReadConfig(_ide, Bmiba, 4)); // I/O BAR, unassigned
        Assert.Equal(0u, ReadConfig(_ide, 0x24, 4));
        Assert.Equal(0u, ReadConfig(_ide, PiixIde.IdetimPrimaryOffset, 4));
        Assert.Equal(0u, ReadConfig(_ide, PiixIde.SidetimOffset, 1));
        Assert.Equal(new PciBar(PciBarKind.Io, 16, 0, false), _ide.Config.GetBar(4));
        for (int bar = 0; bar < 6; bar++)
            Assert.Equal(bar == 4, _ide.GetBarDevice(bar) is not null);
    }

    [Fact]
    public void Legacy_port_constants_match_the_compatibility_addresses()
    {
        Assert.Equal((0x1F0, 0x3F6, 14), (PiixIde.PrimaryCommandPort, PiixIde.PrimaryControlPort, PiixIde.PrimaryIrq));
        Assert.Equal((0x170, 0x376, 15), (PiixIde.SecondaryCommandPort, PiixIde.SecondaryControlPort, PiixIde.SecondaryIrq));
        Assert.Equal((8, 1), (PiixIde.CommandBlockLength, PiixIde.ControlBlockLength));
        Assert.Same(_primary, _ide.Primary);
        Assert.Same(_secondary, _ide.Secondary);
    }

    [Fact]
    public void Bar4_answers_the_sizing_protocol_and_takes_an_address()
    {
        WriteConfig(_ide, Bmiba, 4, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_FFF1u, ReadConfig(_ide, Bmiba, 4)); // 16 ports, sized as a 32-bit register (SeaBIOS, QEMU)
        WriteConfig(_ide, Bmiba, 4, 0xC047);
        Assert.Equal(0xC041u, ReadConfig(_ide, Bmiba, 4));
        Assert.Equal(new PciBar(PciBarKind.Io, 16, 0xC040, false), _ide.Config.GetBar(4));
    }

    [Fact]
    public void Identity_and_unimplemented_registers_are_read_only()
    {
        var before = new byte[256];
        _ide.ReadConfig(0, before);
        var ones = new byte[256];
        Array.Fill(ones, (byte)0xFF);
        // Everything except the command register, the latency timer, BMIBA and the timing registers.
        foreach (var (start, end) in new[] { (0x00, 0x04), (0x06, 0x0D), (0x0E, 0x20), (0x24, 0x40), (0x45, 0x100) })
            _ide.WriteConfig(start, ones.AsSpan(start, end - start));
        var after = new byte[256];
        _ide.ReadConfig(0, after);
        Assert.Equal(before, after);
    }

    [Fact]
    public void Command_register_only_takes_io_space_and_bus_master_enable()
    {
        WriteConfig(_ide, PciConfigSpace.CommandOffset, 2, 0xFFFF);
        Assert.Equal((uint)(PciConfigSpace.CommandIoSpace | PciConfigSpace.CommandBusMaster), ReadConfig(_ide, 0x04, 2));
        Assert.True(_ide.BusMasterEnabled);
        WriteConfig(_ide, PciConfigSpace.CommandOffset, 2, 0);
        Assert.False(_ide.BusMasterEnabled);
    }

    [Fact]
    public void Timing_registers_and_latency_timer_are_guest_writable()
    {
        WriteConfig(_ide, PiixIde.IdetimPrimaryOffset, 2, 0xFFFF);
        WriteConfig(_ide, PiixIde.IdetimSecondaryOffset, 2, 0xA307);
        WriteConfig(_ide, PiixIde.SidetimOffset, 1, 0x5A);
        WriteConfig(_ide, PciConfigSpace.LatencyTimerOffset, 1, 0xFF);
        Assert.Equal(0xF3FFu, ReadConfig(_ide, PiixIde.IdetimPrimaryOffset, 2)); // bits 11:10 reserved
        Assert.Equal(0xA307u, ReadConfig(_ide, PiixIde.IdetimSecondaryOffset, 2));
        Assert.Equal(0x5Au, ReadConfig(_ide, PiixIde.SidetimOffset, 1));
        Assert.Equal(0xF0u, ReadConfig(_ide, PciConfigSpace.LatencyTimerOffset, 1));
        // A dword write covers both IDETIMs.
        WriteConfig(_ide, PiixIde.IdetimPrimaryOffset, 4, 0x8000_8000);
        Assert.Equal(0x8000_8000u, ReadConfig(_ide, PiixIde.IdetimPrimaryOffset, 4));
    }

    [Fact]
    public void EnableLegacyDecode_sets_the_decode_bits_as_firmware_does()
    {
        WriteConfig(_ide, PiixIde.IdetimPrimaryOffset, 2, 0x0077);
        _ide.EnableLegacyDecode();
        Assert.Equal(0x8077u, ReadConfig(_ide, PiixIde.IdetimPrimaryOffset, 2));
        Assert.Equal(0x8000u, ReadConfig(_ide, PiixIde.IdetimSecondaryOffset, 2));
        // What Linux's ata_piix tests before probing a channel.
        Assert.Equal(0x80u, ReadConfig(_ide, 0x41, 1) & 0x80);
        Assert.Equal(0x80u, ReadConfig(_ide, 0x43, 1) & 0x80);
    }

    // ---- BAR 4 routing ------------------------------------------------------------------------------------

    [Fact]
    public void Bar4_routes_the_low_half_to_the_primary_and_the_high_half_to_the_secondary()
    {
        BarWrite(0x0C, 4, 0x0003_2104);
        Assert.Equal(0x0003_2104u, Bar(0x0C, 4));
        Assert.Equal(0u, Bar(0x04, 4));
        Span<byte> direct = stackalloc byte[4];
        _secondary.BusMaster!.Read(4, direct);
        Assert.Equal(0x0003_2104u, BinaryPrimitives.ReadUInt32LittleEndian(direct));

        BarWrite(0x04, 4, 0x0000_8000);
        Assert.Equal(0x8000u, Bar(0x04, 4));
        Assert.Equal(0x0003_2104u, Bar(0x0C, 4));

        // Status: the DMA-capable bits are plain storage, per channel.
        BarWrite(0x0A, 1, BusMasterBits.DmaCapableMask);
        Assert.Equal((uint)BusMasterBits.DmaCapableMask, Bar(0x0A, 1));
        Assert.Equal(0u, Bar(0x02, 1));
        // Command: direction bit lands on the secondary only.
        BarWrite(0x08, 1, BusMasterBits.ToMemory);
        Assert.Equal((uint)BusMasterBits.ToMemory, Bar(0x08, 1));
        Assert.Equal(0u, Bar(0x00, 1));
    }

    [Fact]
    public void An_access_straddling_the_two_halves_is_split_between_the_channels()
    {
        BarWrite(0x04, 4, 0x1234_5670);
        BarWrite(0x0C, 4, 0x0ABC_DEF0);
        // Bytes 6-7 are the primary's PRD high half, 8-9 the secondary's command and a reserved byte.
        BarWrite(0x08, 1, BusMasterBits.ToMemory);
        Assert.Equal(0x0008_1234u, Bar(0x06, 4));
        // Bytes past the BAR float.
        Assert.Equal(0xFFFF_0ABCu, Bar(0x0E, 4));
    }

    [Fact]
    public void An_absent_secondary_channel_floats_and_ignores_writes()
    {
        var ide = new PiixIde(_primary, null);
        IBusDevice bar = ide.GetBarDevice(PiixIde.BusMasterBar)!;
        bar.Write(0x0C, [0x00, 0x10, 0x00, 0x00]);
        bar.Write(0x08, [BusMasterBits.Start]);
        Span<byte> b = stackalloc byte[4];
        bar.Read(0x0C, b);
        Assert.Equal(0xFFFF_FFFFu, BinaryPrimitives.ReadUInt32LittleEndian(b));
        bar.Read(0x08, b[..1]);
        Assert.Equal(0xFF, b[0]);
        bar.Write(0x04, [0x00, 0x20, 0x00, 0x00]);
        bar.Read(0x04, b);
        Assert.Equal(0x2000u, BinaryPrimitives.ReadUInt32LittleEndian(b));
        Assert.Null(ide.Secondary);
        ide.Reset(); // nothing to reset on the secondary side
    }

    [Fact]
    public void Channels_without_dma_memory_and_no_channels_at_all_are_harmless()
    {
        var pioOnly = new IdeChannel(new RecordingIrq(), new IdeDrive(new FakeDisk(8)));
        var ide = new PiixIde(pioOnly, null);
        IBusDevice bar = ide.GetBarDevice(PiixIde.BusMasterBar)!;
        Span<byte> b = stackalloc byte[2];
        bar.Write(0x00, [BusMasterBits.Start, 0]);
        bar.Read(0x00, b);
        Assert.Equal(0xFFFF, BinaryPrimitives.ReadUInt16LittleEndian(b));

        var empty = new PiixIde(null, null);
        WriteConfig(empty, PciConfigSpace.CommandOffset, 2, 0x5);
        empty.GetBarDevice(PiixIde.BusMasterBar)!.Read(0x0A, b);
        Assert.Equal(0xFFFF, BinaryPrimitives.ReadUInt16LittleEndian(b));
        empty.Reset();
    }

    [Fact]
    public void The_same_channel_cannot_be_primary_and_secondary()
    {
        Assert.Throws<ArgumentException>(() => new PiixIde(_primary, _primary));
    }

    // ---- bus mastering ------------------------------------------------------------------------------------

    [Fact]
    public void Dma_runs_when_bus_master_enable_is_set()
    {
        EnableBusMaster(true);
        SetPrd(8, 0x6000, 1024);
        StartReadDma(_secondary, 8, 5, 2);
        Assert.True(_irq15.Level);
        Assert.False(_irq14.Level);
        Assert.Equal((uint)BusMasterBits.Interrupt, Bar(0x0A, 1) & 0x07);
        Assert.Equal(Ready, In(_secondary, 7));
        Assert.Equal(_secondaryDisk.Data.AsSpan(5 * 512, 1024).ToArray(), _memory.GetSpan(new GuestAddress(0x6000), 1024).ToArray());
    }

    [Fact]
    public void Dma_stalls_while_bus_master_enable_is_clear_and_completes_once_it_is_set()
    {
        WriteConfig(_ide, PciConfigSpace.CommandOffset, 2, PciConfigSpace.CommandIoSpace);
        SetPrd(0, 0x4000, 512);
        StartReadDma(_primary, 0, 3, 1);

        Assert.False(_irq14.Level);
        Assert.Equal((uint)BusMasterBits.Active, Bar(0x02, 1) & 0x07); // started, but never got the bus
        Assert.Equal(Ready | AtaStatus.Drq, In(_primary, 7));
        Assert.All(_memory.GetSpan(new GuestAddress(0x4000), 512).ToArray(), b => Assert.Equal(0, b));

        EnableBusMaster(true);
        Assert.True(_irq14.Level);
        Assert.Equal((uint)BusMasterBits.Interrupt, Bar(0x02, 1) & 0x07);
        Assert.Equal(Ready, In(_primary, 7));
        Assert.Equal(_primaryDisk.Data.AsSpan(3 * 512, 512).ToArray(), _memory.GetSpan(new GuestAddress(0x4000), 512).ToArray());
    }

    [Fact]
    public void Clearing_bus_master_enable_gates_a_later_transfer()
    {
        EnableBusMaster(true);
        SetPrd(0, 0x4000, 512);
        StartReadDma(_primary, 0, 0, 1);
        Assert.True(_irq14.Level);
        BarWrite(0x00, 1, 0); // stop
        BarWrite(0x02, 1, BusMasterBits.Interrupt);
        In(_primary, 7);
        _memory.GetSpan(new GuestAddress(0x4000), 512).Clear();

        EnableBusMaster(false);
        StartReadDma(_primary, 0, 1, 1);
        Assert.False(_irq14.Level);
        Assert.All(_memory.GetSpan(new GuestAddress(0x4000), 512).ToArray(), b => Assert.Equal(0, b));
    }

    // ---- reset --------------------------------------------------------------------------------------------

    [Fact]
    public void Reset_restores_config_defaults_and_clears_both_channels_bus_masters()
    {
        EnableBusMaster(true);
        WriteConfig(_ide, Bmiba, 4, 0xC000);
        WriteConfig(_ide, PiixIde.IdetimPrimaryOffset, 4, 0x8000_8000);
        WriteConfig(_ide, PiixIde.SidetimOffset, 1, 0x33);
        WriteConfig(_ide, PciConfigSpace.LatencyTimerOffset, 1, 0x40);
        SetPrd(0, 0x4000, 512);
        StartReadDma(_primary, 0, 0, 1);
        BarWrite(0x0C, 4, 0x2000);
        BarWrite(0x0A, 1, BusMasterBits.DmaCapableMask);
        // A pending transfer on the secondary, stalled on BME.
        EnableBusMaster(false);
        SetPrd(8, 0x6000, 512);
        StartReadDma(_secondary, 8, 0, 1);
        Assert.True(_irq14.Level);

        _ide.Reset();

        Assert.Equal(0u, ReadConfig(_ide, 0x04, 2));
        Assert.Equal(0x0280u, ReadConfig(_ide, 0x06, 2));
        Assert.Equal(0u, ReadConfig(_ide, PciConfigSpace.LatencyTimerOffset, 1));
        Assert.Equal(0x0000_0001u, ReadConfig(_ide, Bmiba, 4));
        Assert.Equal(0u, ReadConfig(_ide, PiixIde.IdetimPrimaryOffset, 4));
        Assert.Equal(0u, ReadConfig(_ide, PiixIde.SidetimOffset, 1));
        Assert.False(_ide.BusMasterEnabled);
        for (ulong offset = 0; offset < 16; offset += 4)
            Assert.Equal(0u, Bar(offset, 4));
        Assert.False(_irq14.Level);
        Assert.Equal(Ready, In(_primary, 7));
        Assert.Equal(Ready, In(_secondary, 7));

        // The stalled transfer was dropped: enabling the bus master now moves nothing.
        EnableBusMaster(true);
        Assert.False(_irq15.Level);
        Assert.All(_memory.GetSpan(new GuestAddress(0x6000), 512).ToArray(), b => Assert.Equal(0, b));
    }

    // ---- with the machine's BAR router --------------------------------------------------------------------

    [Fact]
    public void The_bar_router_decodes_bar4_once_firmware_assigns_it()
    {
        var bus = new PciBus();
        bus.Add(1, 0, new Piix3IsaBridge());
        bus.Add(1, 1, _ide);
        var router = new PciBarRouter(bus, 0xC000_0000, 0xC100_0000, 0xC000, 0xCFFF);
        router.AssignAll();
        Assert.True(router.TryGetMapping(_ide, PiixIde.BusMasterBar, out MappedBar mapping));
        Assert.Equal((0xC000ul, 16ul, true), (mapping.Base, mapping.Size, mapping.IsIo));

        // The guest moves the BAR through configuration cycles; the secondary's PRD pointer follows it.
        bus.WriteConfig(1, 1, Bmiba, [0x40, 0xC1, 0x00, 0x00]);
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, 0x0001_0000);
        router.IoWindow.Write(0xC14C - 0xC000, b);
        Assert.Equal(0x0001_0000u, Bar(0x0C, 4));
        b.Clear();
        router.IoWindow.Read(0xC14C - 0xC000, b);
        Assert.Equal(0x0001_0000u, BinaryPrimitives.ReadUInt32LittleEndian(b));

        // Turning I/O decode off unmaps it.
        bus.WriteConfig(1, 1, PciConfigSpace.CommandOffset, [0x00, 0x00]);
        Assert.False(router.TryGetMapping(_ide, PiixIde.BusMasterBar, out _));
    }
}
