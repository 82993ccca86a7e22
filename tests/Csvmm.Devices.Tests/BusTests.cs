namespace Csvmm.Devices.Tests;

/// <summary>A device that records the offsets it was accessed at and answers reads with a fixed byte.</summary>
internal sealed class ProbeDevice(byte value) : IBusDevice
{
    public List<(bool Write, ulong Offset, int Length)> Accesses { get; } = [];

    public void Read(ulong offset, Span<byte> data)
    {
        Accesses.Add((false, offset, data.Length));
        data.Fill(value);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data) => Accesses.Add((true, offset, data.Length));
}

public sealed class PortIoBusTests
{
    [Fact]
    public void DispatchesWithTheOffsetFromTheRangeStart()
    {
        var bus = new PortIoBus();
        var com1 = new ProbeDevice(0x11);
        var cmos = new ProbeDevice(0x22);
        bus.Register(0x3F8, 8, com1, "COM1");
        bus.Register(0x70, 2, cmos, "CMOS");
        bus.Freeze();

        Span<byte> b = stackalloc byte[1];
        Assert.True(bus.Read(0x3FD, b));
        Assert.Equal(0x11, b[0]);
        Assert.True(bus.Write(0x71, [0x5A]));
        Assert.Equal([(false, 5UL, 1)], com1.Accesses);
        Assert.Equal([(true, 1UL, 1)], cmos.Accesses);
        Assert.Equal("COM1", bus.NameAt(0x3FF));
        Assert.Null(bus.NameAt(0x400));
        Assert.Equal(0, bus.UnhandledAccesses);
    }

    [Fact]
    public void UnhandledPortsReadAllOnesAndAreCounted()
    {
        var bus = new PortIoBus();
        bus.Register(0x80, 1, new ProbeDevice(0), "POST");
        bus.Freeze();
        Span<byte> b = stackalloc byte[4];
        Assert.False(bus.Read(0x81, b));
        Assert.Equal(0xFFFF_FFFFUL, BusData.Get(b));
        Assert.False(bus.Write(0x7F, b));
        Assert.Equal(2, bus.UnhandledAccesses);
    }

    [Theory]
    [InlineData(0x3F8, 8)]
    [InlineData(0x3F0, 9)]
    [InlineData(0x3FF, 1)]
    [InlineData(0x300, 0x200)]
    public void OverlapsAreRefused(int basePort, int length)
    {
        var bus = new PortIoBus();
        bus.Register(0x3F8, 8, new ProbeDevice(0), "COM1");
        var e = Assert.Throws<DeviceException>(() => bus.Register((ushort)basePort, (ushort)length, new ProbeDevice(0), "other"));
        Assert.Contains("COM1", e.Message);
    }

    [Fact]
    public void AdjacentRangesAreFine()
    {
        var bus = new PortIoBus();
        bus.Register(0x3F8, 8, new ProbeDevice(0), "COM1");
        bus.Register(0x3F0, 8, new ProbeDevice(0), "below");
        bus.Register(0x400, 1, new ProbeDevice(0), "above");
        bus.Register(0xFFFF, 1, new ProbeDevice(0), "last port");
    }

    [Fact]
    public void BadRangesAndLateRegistrationAreRefused()
    {
        var bus = new PortIoBus();
        Assert.Throws<DeviceException>(() => bus.Register(0x10, 0, new ProbeDevice(0), "empty"));
        Assert.Throws<DeviceException>(() => bus.Register(0xFFFF, 2, new ProbeDevice(0), "past the end"));
        bus.Freeze();
        Assert.True(bus.IsFrozen);
        Assert.Throws<DeviceException>(() => bus.Register(0x10, 1, new ProbeDevice(0), "late"));
    }
}

public sealed class MmioBusTests
{
    [Fact]
    public void BinarySearchFindsEachRange()
    {
        var bus = new MmioBus();
        var devices = new ProbeDevice[10];
        // Registered out of order on purpose.
        for (int i = devices.Length - 1; i >= 0; i--)
        {
            devices[i] = new ProbeDevice((byte)i);
            bus.Register(0xD000_0000UL + (ulong)i * 0x2000, 0x1000, devices[i], $"dev{i}");
        }
        bus.Freeze();
        Span<byte> b = stackalloc byte[4];
        for (int i = 0; i < devices.Length; i++)
        {
            ulong start = 0xD000_0000UL + (ulong)i * 0x2000;
            Assert.True(bus.Read(start, b));
            Assert.Equal((byte)i, b[0]);
            Assert.True(bus.Write(start + 0xFFC, b));
            Assert.Equal([(false, 0UL, 4), (true, 0xFFCUL, 4)], devices[i].Accesses);
            Assert.False(bus.Read(start + 0x1000, b)); // the gap after each range
        }
        Assert.Equal(devices.Length, bus.UnhandledAccesses);
    }

    [Fact]
    public void UnhandledAddressesReadAllOnes()
    {
        var bus = new MmioBus();
        bus.Freeze();
        Span<byte> b = stackalloc byte[8];
        b.Clear();
        Assert.False(bus.Read(0xFEC0_0000, b));
        Assert.Equal(ulong.MaxValue, BusData.Get(b));
        Assert.False(bus.Write(0xFEC0_0000, b));
        Assert.Equal(2, bus.UnhandledAccesses);
    }

    [Theory]
    [InlineData(0x1000UL, 0x1000UL)]
    [InlineData(0x0800UL, 0x1000UL)]
    [InlineData(0x1FFFUL, 0x1UL)]
    [InlineData(0x0UL, 0x10000UL)]
    public void OverlapsAreRefused(ulong start, ulong length)
    {
        var bus = new MmioBus();
        bus.Register(0x1000, 0x1000, new ProbeDevice(0), "first");
        var e = Assert.Throws<DeviceException>(() => bus.Register(start, length, new ProbeDevice(0), "second"));
        Assert.Contains("first", e.Message);
    }

    [Fact]
    public void WrappingEmptyAndLateRangesAreRefused()
    {
        var bus = new MmioBus();
        Assert.Throws<DeviceException>(() => bus.Register(0xFFFF_FFFF_FFFF_F000, 0x2000, new ProbeDevice(0), "wraps"));
        Assert.Throws<DeviceException>(() => bus.Register(0x1000, 0, new ProbeDevice(0), "empty"));
        bus.Register(0xFFFF_FFFF_FFFF_F000, 0x1000, new ProbeDevice(0), "top page");
        bus.Freeze();
        Assert.Throws<DeviceException>(() => bus.Register(0x1000, 0x1000, new ProbeDevice(0), "late"));
        Span<byte> b = stackalloc byte[1];
        Assert.True(bus.Read(ulong.MaxValue, b));
    }
}
