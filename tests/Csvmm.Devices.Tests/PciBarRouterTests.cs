using System.Buffers.Binary;
using Csvmm.Devices;
using Csvmm.Devices.Pci;

namespace Csvmm.Devices.Tests;

public sealed class PciBarRouterTests
{
    private const ulong MmioStart = 0xC000_0000, MmioEnd = 0xFE00_0000;
    private const ushort IoStart = 0x1000, IoEnd = 0xFFFF;

    /// <summary>A function with a 16 KiB memory BAR 0, a 64-bit 1 MiB BAR 2 and a 32-port I/O BAR 4, each recording accesses.</summary>
    private sealed class FakeFunction : IPciBarFunction
    {
        public readonly LoggingDevice[] Bars = [new(), new(), new(), new(), new(), new()];

        public FakeFunction()
        {
            Config = new PciConfigSpace(0x1234, 0x5678, 0x018000, 1);
            Config.AddMemoryBar(0, 0x4000);
            Config.AddMemoryBar(2, 0x10_0000, is64Bit: true);
            Config.AddIoBar(4, 32);
        }

        public PciConfigSpace Config { get; }
        public IBusDevice? GetBarDevice(int bar) => bar is 0 or 2 or 4 ? Bars[bar] : null;
        public void ReadConfig(int offset, Span<byte> data) => Config.Read(offset, data);
        public void WriteConfig(int offset, ReadOnlySpan<byte> data) => Config.Write(offset, data);
    }

    internal sealed class LoggingDevice : IBusDevice
    {
        public readonly List<(ulong Offset, bool Write, ulong Value)> Log = [];
        public void Read(ulong offset, Span<byte> data) { Log.Add((offset, false, 0)); BusData.Set(data, 0xAB); }
        public void Write(ulong offset, ReadOnlySpan<byte> data) => Log.Add((offset, true, BusData.Get(data)));
    }

    private static (PciBus Bus, PciBarRouter Router, FakeFunction F) Build()
    {
        var bus = new PciBus();
        var f = new FakeFunction();
        bus.Add(3, 0, f);
        return (bus, new PciBarRouter(bus, MmioStart, MmioEnd, IoStart, IoEnd), f);
    }

    private static void WriteDword(PciBus bus, int offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        bus.WriteConfig(3, 0, offset, b);
    }

    private static uint Read(IBusDevice window, ulong offset)
    {
        Span<byte> b = stackalloc byte[4];
        window.Read(offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    [Fact]
    public void NothingDecodesBeforeBarsAreProgrammed()
    {
        var (_, router, f) = Build();
        router.Refresh();
        Assert.Empty(router.Mapped);
        Assert.Equal(0xFFFF_FFFFu, Read(router.MmioWindow, 0));
        Assert.Equal(1, router.UnclaimedAccesses);
        Assert.All(f.Bars, b => Assert.Empty(b.Log));
    }

    [Fact]
    public void AssignAllPlacesBarsAlignedLargestFirstAndEnablesDecode()
    {
        var (_, router, f) = Build();
        router.AssignAll();
        var bar2 = f.Config.GetBar(2);
        var bar0 = f.Config.GetBar(0);
        var bar4 = f.Config.GetBar(4);
        Assert.Equal(MmioStart, bar2.Address);                 // 1 MiB first
        Assert.Equal(MmioStart + 0x10_0000, bar0.Address);     // then 16 KiB, aligned
        Assert.Equal(IoStart, bar4.Address);
        Assert.Equal(PciConfigSpace.CommandIoSpace | PciConfigSpace.CommandMemorySpace, f.Config.Command);
        Assert.Equal(3, router.Mapped.Count);

        Assert.Equal(0xABu, Read(router.MmioWindow, 0x10_0000 + 0x30));
        Assert.Equal((0x30UL, false, 0UL), f.Bars[0].Log.Single());
        router.IoWindow.Write(5, [0x77]);
        Assert.Equal((5UL, true, 0x77UL), f.Bars[4].Log.Single());
    }

    [Fact]
    public void GuestReprogrammingMovesTheBarAndRaisesRemapped()
    {
        var (bus, router, f) = Build();
        router.AssignAll();
        int remaps = 0;
        router.Remapped += _ => remaps++;
        WriteDword(bus, 0x10, 0xE000_0000);
        Assert.Equal(1, remaps);
        Assert.True(router.TryGetMapping(f, 0, out var m));
        Assert.Equal(0xE000_0000UL, m.Base);
        Read(router.MmioWindow, 0xE000_0000 - MmioStart + 8);
        Assert.Equal(8UL, f.Bars[0].Log.Single().Offset);
        // The old place answers nothing any more.
        Read(router.MmioWindow, 0x10_0000);
        Assert.Single(f.Bars[0].Log);
    }

    [Fact]
    public void SizingAndDisabledDecodeUnmap()
    {
        var (bus, router, f) = Build();
        router.AssignAll();
        WriteDword(bus, 0x10, 0xFFFF_FFFF);              // sizing: reads back the size mask, far outside the window
        Assert.False(router.TryGetMapping(f, 0, out _));
        WriteDword(bus, 0x10, 0xD000_0000);
        Assert.True(router.TryGetMapping(f, 0, out _));
        WriteDword(bus, 0x04, 0);                        // memory and I/O decode off
        Assert.Empty(router.Mapped);
        Assert.Equal(0xFFFF_FFFFu, Read(router.MmioWindow, 0xD000_0000 - MmioStart));
        Assert.Empty(f.Bars[0].Log);
    }

    [Fact]
    public void WritesElsewhereDoNotRebuild()
    {
        var (bus, router, _) = Build();
        router.AssignAll();
        int remaps = 0;
        router.Remapped += _ => remaps++;
        bus.WriteConfig(3, 0, 0x3C, [0x0B]);   // interrupt line
        WriteDword(bus, 0x10, 0xC010_0000);    // same address again: no change, no event
        Assert.Equal(0, remaps);
    }

    [Fact]
    public void TooSmallWindowIsRefused()
    {
        var bus = new PciBus();
        bus.Add(3, 0, new FakeFunction());
        var router = new PciBarRouter(bus, 0xC000_0000, 0xC000_8000, IoStart, IoEnd);
        Assert.Throws<DeviceException>(router.AssignAll);
    }
}
