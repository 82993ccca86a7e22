using Csvmm.Devices.Pci;

namespace Csvmm.Devices.Tests;

public sealed class PciTests
{
    private const ulong Address = 0, Data = 4;

    private readonly FakeVmControl _control = new();
    private readonly PciBus _bus = new();
    private readonly PciHostBridge _hostBridge = new();
    private readonly Piix3IsaBridge _isaBridge = new();
    private readonly PciConfigIo _io;

    public PciTests()
    {
        _bus.Add(0, 0, _hostBridge);
        _bus.Add(1, 0, _isaBridge);
        _bus.Freeze();
        _io = new PciConfigIo(_bus, _control);
    }

    private static uint ConfigAddress(int device, int function, int register, int bus = 0, bool enable = true) =>
        (enable ? 0x8000_0000u : 0) | (uint)bus << 16 | (uint)device << 11 | (uint)function << 8 | (uint)register;

    private ulong ReadConfig(int device, int function, int register, int width)
    {
        _io.WriteValue(Address, 4, ConfigAddress(device, function, register & 0xFC));
        return _io.ReadValue(Data + (ulong)(register & 3), width);
    }

    private void WriteConfig(int device, int function, int register, int width, ulong value)
    {
        _io.WriteValue(Address, 4, ConfigAddress(device, function, register & 0xFC));
        _io.WriteValue(Data + (ulong)(register & 3), width, value);
    }

    // ---- mechanism #1 -------------------------------------------------------------------------------------

    [Fact]
    public void HostBridgeIdsThroughDwordWordAndByteAccesses()
    {
        Assert.Equal(0x1237_8086UL, ReadConfig(0, 0, 0x00, 4));
        Assert.Equal(0x8086UL, ReadConfig(0, 0, 0x00, 2));
        Assert.Equal(0x1237UL, ReadConfig(0, 0, 0x02, 2));
        Assert.Equal(0x86UL, ReadConfig(0, 0, 0x00, 1));
        Assert.Equal(0x80UL, ReadConfig(0, 0, 0x01, 1));
        Assert.Equal(0x37UL, ReadConfig(0, 0, 0x02, 1));
        Assert.Equal(0x12UL, ReadConfig(0, 0, 0x03, 1));
    }

    [Fact]
    public void HostBridgeClassRevisionAndHeaderType()
    {
        Assert.Equal(0x0600_0002UL, ReadConfig(0, 0, 0x08, 4)); // class 06/00/00, revision 2
        Assert.Equal(0x0600UL, ReadConfig(0, 0, 0x0A, 2));      // what Linux's pci_sanity_check reads
        Assert.Equal(0x00UL, ReadConfig(0, 0, 0x0E, 1));
    }

    [Fact]
    public void IsaBridgeIsAMultiFunctionPiix3()
    {
        Assert.Equal(0x7000_8086UL, ReadConfig(1, 0, 0x00, 4));
        Assert.Equal(0x0601_0000UL, ReadConfig(1, 0, 0x08, 4) & 0xFFFF_FF00);
        Assert.Equal(0x80UL, ReadConfig(1, 0, 0x0E, 1));
    }

    [Fact]
    public void EnableBitClearReadsAllOnes()
    {
        _io.WriteValue(Address, 4, ConfigAddress(0, 0, 0, enable: false));
        Assert.Equal(0xFFFF_FFFFUL, _io.ReadValue(Data, 4));
        _io.WriteValue(Data, 4, 0);                              // and writes go nowhere
        Assert.Equal(0x1237_8086UL, ReadConfig(0, 0, 0, 4));
    }

    [Fact]
    public void AbsentFunctionsAndOtherBusesReadAllOnes()
    {
        Assert.Equal(0xFFFF_FFFFUL, ReadConfig(5, 0, 0x00, 4));
        Assert.Equal(0xFFFFUL, ReadConfig(0, 3, 0x00, 2));
        _io.WriteValue(Address, 4, ConfigAddress(0, 0, 0, bus: 1));
        Assert.Equal(0xFFFF_FFFFUL, _io.ReadValue(Data, 4));
        WriteConfig(5, 0, 0x04, 2, 0x7);                         // ignored
        Assert.Equal(3, _bus.AbsentAccesses);                    // bus 1 never reaches the bus table
    }

    [Fact]
    public void ConfigAddressLatchesOnlyDwordAccesses()
    {
        // Linux's pci_check_type1: a byte write to 0xCFB, then the dword must read back exactly.
        _io.WriteByte(3, 0x01);
        _io.WriteValue(Address, 4, 0x8000_0000);
        Assert.Equal(0x8000_0000UL, _io.ReadValue(Address, 4));
        // ... and pci_check_type2 must fail: byte reads at 0xCF8/0xCFA are not zero.
        _io.WriteByte(0, 0x00);
        _io.WriteByte(2, 0x00);
        Assert.Equal(0xFF, _io.ReadByte(0));
        Assert.Equal(0xFF, _io.ReadByte(2));
        Assert.Equal(0xFFFFUL, _io.ReadValue(Address, 2));
        Assert.Equal(0x8000_0000u, _io.ConfigAddress);
        // Reserved bits read as zero.
        _io.WriteValue(Address, 4, 0xFFFF_FFFF);
        Assert.Equal(0x80FF_FFFCUL, _io.ReadValue(Address, 4));
    }

    [Fact]
    public void ReadOnlyFieldsStayPut()
    {
        WriteConfig(0, 0, 0x00, 4, 0xFFFF_FFFF);
        WriteConfig(0, 0, 0x08, 4, 0xFFFF_FFFF);
        WriteConfig(0, 0, 0x0E, 1, 0x80);
        Assert.Equal(0x1237_8086UL, ReadConfig(0, 0, 0x00, 4));
        Assert.Equal(0x0600_0002UL, ReadConfig(0, 0, 0x08, 4));
        Assert.Equal(0x00UL, ReadConfig(0, 0, 0x0E, 1));
        WriteConfig(0, 0, 0x04, 2, 0xFFFF);
        Assert.Equal(0x0547UL, ReadConfig(0, 0, 0x04, 2));     // only the defined command bits
    }

    [Fact]
    public void PamAndSmramRegistersAreStored()
    {
        WriteConfig(0, 0, 0x59, 1, 0x30);
        for (int i = 1; i < 7; i++) WriteConfig(0, 0, 0x59 + i, 1, 0x33);
        Assert.Equal(0x30UL, ReadConfig(0, 0, 0x59, 1));
        Assert.Equal(0x3333_3333UL, ReadConfig(0, 0, 0x5C, 4));
        Assert.Equal(0x02UL, ReadConfig(0, 0, 0x72, 1));
        WriteConfig(0, 0, 0x72, 1, 0x4A);
        Assert.Equal(0x4AUL, ReadConfig(0, 0, 0x72, 1));
    }

    [Fact]
    public void PirqRouteRegistersAreStored()
    {
        Assert.Equal(0x8080_8080UL, ReadConfig(1, 0, 0x60, 4));
        WriteConfig(1, 0, 0x60, 4, 0x0B0B_0A0A);
        Assert.Equal(0x0B0B_0A0AUL, ReadConfig(1, 0, 0x60, 4));
        Assert.Equal(10, _isaBridge.PirqRoute(0));
        Assert.Equal(11, _isaBridge.PirqRoute(3));
        WriteConfig(1, 0, 0x61, 1, 0x80);
        Assert.Null(_isaBridge.PirqRoute(1));
    }

    [Fact]
    public void ResetControlRequestsResetWithBit2()
    {
        _io.WriteByte(1, 0x02);                                  // Linux: SYS_RST first ...
        Assert.Empty(_control.Resets);
        Assert.Equal(0x02, _io.ReadByte(1));
        _io.WriteByte(1, 0x06);                                  // ... then SYS_RST | RST_CPU
        Assert.Single(_control.Resets);
        Assert.Contains("0xCF9", _control.Resets[0]);
    }

    [Fact]
    public void DwordAccessAtCf8IsNotTheResetRegister()
    {
        _io.WriteValue(Address, 4, 0x8000_0600);
        Assert.Empty(_control.Resets);
    }

    // ---- PciConfigSpace ----------------------------------------------------------------------------------

    private static PciConfigSpace NewSpace() => new(0x1AF4, 0x1042, 0x01_80_00, 1);

    private static uint GuestDword(PciConfigSpace cs, int offset)
    {
        Span<byte> b = stackalloc byte[4];
        cs.Read(offset, b);
        return (uint)BusData.Get(b);
    }

    private static void GuestWrite(PciConfigSpace cs, int offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BusData.Set(b, value);
        cs.Write(offset, b);
    }

    [Fact]
    public void MemoryBarSizing()
    {
        var cs = NewSpace();
        cs.AddMemoryBar(0, 0x1000);
        GuestWrite(cs, 0x10, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_F000u, GuestDword(cs, 0x10));
        GuestWrite(cs, 0x10, 0xC000_0000);
        Assert.Equal(0xC000_0000u, GuestDword(cs, 0x10));
        var bar = cs.GetBar(0);
        Assert.Equal(new PciBar(PciBarKind.Memory32, 0x1000, 0xC000_0000, false), bar);
    }

    [Fact]
    public void SixtyFourBitPrefetchableBarSizing()
    {
        var cs = NewSpace();
        cs.AddMemoryBar(2, 0x10_0000, is64Bit: true, prefetchable: true);
        Assert.Equal(0x0000_000Cu, GuestDword(cs, 0x18));
        GuestWrite(cs, 0x18, 0xFFFF_FFFF);
        GuestWrite(cs, 0x1C, 0xFFFF_FFFF);
        Assert.Equal(0xFFF0_000Cu, GuestDword(cs, 0x18));
        Assert.Equal(0xFFFF_FFFFu, GuestDword(cs, 0x1C));
        GuestWrite(cs, 0x18, 0x8000_0000);
        GuestWrite(cs, 0x1C, 0x1);
        Assert.Equal(0x1_8000_0000UL, cs.GetBar(2).Address);
        Assert.Equal(PciBarKind.Memory64, cs.GetBar(2).Kind);
        Assert.Equal(PciBarKind.None, cs.GetBar(3).Kind);
        Assert.Throws<DeviceException>(() => cs.AddIoBar(3, 16)); // the upper half is taken
    }

    [Fact]
    public void IoBarSizing()
    {
        var cs = NewSpace();
        cs.AddIoBar(1, 32);
        Assert.Equal(0x1u, GuestDword(cs, 0x14));
        GuestWrite(cs, 0x14, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_FFE1u, GuestDword(cs, 0x14));
        GuestWrite(cs, 0x14, 0xC040);
        Assert.Equal(0xC040UL, cs.GetBar(1).Address);
    }

    [Fact]
    public void UndeclaredBarsReadZeroAndIgnoreWrites()
    {
        var cs = NewSpace();
        GuestWrite(cs, 0x20, 0xFFFF_FFFF);
        Assert.Equal(0u, GuestDword(cs, 0x20));
        GuestWrite(cs, 0x30, 0xFFFF_FFFF);                       // no expansion ROM
        Assert.Equal(0u, GuestDword(cs, 0x30));
    }

    [Theory]
    [InlineData(0, 8ul, false)]          // below 16 bytes
    [InlineData(0, 0x3000ul, false)]     // not a power of two
    [InlineData(0, 0x1_0000_0000ul, false)] // too big for 32 bits
    [InlineData(5, 0x1000ul, true)]      // a 64-bit BAR needs index + 1
    public void BadBarsAreRefused(int index, ulong size, bool is64)
    {
        var cs = NewSpace();
        Assert.Throws<DeviceException>(() => cs.AddMemoryBar(index, size, is64));
    }

    [Fact]
    public void StatusErrorBitsAreWriteOneToClear()
    {
        var cs = NewSpace();
        cs.SetWord(PciConfigSpace.StatusOffset, 0x2010);        // received master abort, capability list
        GuestWrite(cs, 0x04, 0x0010_0000);                       // a 1 in the capability bit is read-only
        Assert.Equal(0x2010u, GuestDword(cs, 0x04) >> 16);
        GuestWrite(cs, 0x04, 0x2000_0000);
        Assert.Equal(0x0010u, GuestDword(cs, 0x04) >> 16);
    }

    [Fact]
    public void CapabilitiesAreChained()
    {
        var cs = NewSpace();
        int first = cs.AddCapability(0x09, [0x10, 0x01, 0x02]);
        int second = cs.AddCapability(0x11, [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
        Assert.Equal(0x40, first);
        Assert.Equal(0x48, second);
        Assert.Equal(0x40, cs.ReadByte(0x34));
        Assert.Equal(0x09, cs.ReadByte(0x40));
        Assert.Equal(0x48, cs.ReadByte(0x41));
        Assert.Equal(0x10, cs.ReadByte(0x42));
        Assert.Equal(0x11, cs.ReadByte(0x48));
        Assert.Equal(0x00, cs.ReadByte(0x49));
        Assert.Equal(PciConfigSpace.StatusCapabilitiesList, cs.ReadWord(0x06) & PciConfigSpace.StatusCapabilitiesList);
        GuestWrite(cs, 0x40, 0xFFFF_FFFF);                       // read-only unless the device says so
        Assert.Equal(0x01_10_48_09u, GuestDword(cs, 0x40));
        Assert.Throws<DeviceException>(() => cs.AddCapability(0x05, new byte[200]));
    }

    [Fact]
    public void GuestAccessesOutsideTheSpaceDoNotThrow()
    {
        var cs = NewSpace();
        Span<byte> b = stackalloc byte[4];
        cs.Read(254, b);
        Assert.Equal(0xFF, b[2]);
        Assert.Equal(0xFF, b[3]);
        cs.Write(300, b);
        cs.Read(-1, b[..1]);
        Assert.Equal(0xFF, b[0]);
    }

    [Fact]
    public void DeviceSideAccessorsCheckTheirArguments()
    {
        var cs = NewSpace();
        Assert.Throws<ArgumentOutOfRangeException>(() => cs.ReadDword(254));
        Assert.Throws<ArgumentOutOfRangeException>(() => cs.SetValue(0, 3, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PciConfigSpace(0xFFFF, 0, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PciConfigSpace(0x8086, 0, 0x1_00_00_00, 0));
    }

    // ---- PciBus ------------------------------------------------------------------------------------------

    [Fact]
    public void BusRefusesDuplicatesBadAddressesAndLateAdds()
    {
        var bus = new PciBus();
        bus.Add(3, 0, new PciHostBridge(), "first");
        var dup = Assert.Throws<DeviceException>(() => bus.Add(3, 0, new PciHostBridge(), "second"));
        Assert.Contains("first", dup.Message);
        Assert.Throws<DeviceException>(() => bus.Add(32, 0, new PciHostBridge()));
        Assert.Throws<DeviceException>(() => bus.Add(0, 8, new PciHostBridge()));
        bus.Add(3, 1, new Piix3IsaBridge());
        bus.Freeze();
        Assert.True(bus.IsFrozen);
        Assert.Throws<DeviceException>(() => bus.Add(4, 0, new PciHostBridge()));
        Assert.Equal([(3, 0), (3, 1)], bus.Functions.Select(f => (f.Device, f.Function)));
        Assert.Null(bus.Get(4, 0));
        Assert.Null(bus.Get(-1, 0));
    }
}
