using Csvmm.Devices.Pci;
using Csvmm.Devices.State;

namespace Csvmm.Devices.Tests;

/// <summary>A PCI function's configuration space saved and loaded: what the guest programmed comes back, and only into the same function.</summary>
public sealed class PciConfigStateTests
{
    private static PciConfigSpace Function(ushort deviceId = 0x1042, ulong barSize = 0x8000)
    {
        var c = new PciConfigSpace(0x1AF4, deviceId, classCode: 0x01_00_00, revision: 1);
        c.AddMemoryBar(4, barSize, is64Bit: true);
        c.AddIoBar(0, 0x40);
        c.AddCapability(0x11, [0, 0, 0x07, 0x00, 0x04, 0, 0, 0, 0x04, 0x08, 0, 0]); // an MSI-X-shaped capability
        return c;
    }

    private static void GuestProgram(PciConfigSpace c)
    {
        c.Write(PciConfigSpace.Bar0Offset + 16, BitConverter.GetBytes(0xFE00_8000u)); // BAR4 low: 32 KiB-aligned
        c.Write(PciConfigSpace.Bar0Offset + 20, BitConverter.GetBytes(0x0000_0001u)); // BAR4 high: above 4 GiB
        c.Write(PciConfigSpace.Bar0Offset, BitConverter.GetBytes(0xC040u));
        c.Write(PciConfigSpace.CommandOffset, BitConverter.GetBytes((ushort)0x0007));
        c.Write(0x3C, [11]); // interrupt line
    }

    private static byte[] Bytes(PciConfigSpace c)
    {
        var b = new byte[PciConfigSpace.Size];
        c.Read(0, b);
        return b;
    }

    [Fact]
    public void What_the_guest_programmed_reads_back_identically_after_a_load()
    {
        var original = Function();
        GuestProgram(original);
        var restored = Function();
        DeviceStateRecord.Load(restored, DeviceStateRecord.Save(original));
        Assert.Equal(Bytes(original), Bytes(restored));
        Assert.Equal(0x1_FE00_8000UL, restored.GetBar(4).Address);
        Assert.Equal((ushort)0x0007, restored.Command);
    }

    [Fact]
    public void Bar_sizing_still_works_after_a_load()
    {
        var original = Function();
        GuestProgram(original);
        var restored = Function();
        DeviceStateRecord.Load(restored, DeviceStateRecord.Save(original));
        restored.Write(PciConfigSpace.Bar0Offset + 16, BitConverter.GetBytes(0xFFFF_FFFFu));
        Assert.Equal(0xFFFF_8004u, restored.ReadDword(PciConfigSpace.Bar0Offset + 16)); // 32 KiB, 64-bit memory
    }

    [Theory]
    [InlineData((ushort)0x1001, 0x8000UL)] // another device id
    [InlineData((ushort)0x1042, 0x10000UL)] // same ids, a 64 KiB BAR: the saved 32 KiB-aligned address is impossible for it
    public void A_state_of_another_function_is_refused_and_changes_nothing(ushort deviceId, ulong barSize)
    {
        var original = Function();
        GuestProgram(original);
        var other = Function(deviceId, barSize);
        byte[] before = Bytes(other);
        var e = Assert.Throws<DeviceStateException>(() => DeviceStateRecord.Load(other, DeviceStateRecord.Save(original)));
        Assert.Contains("cannot write", e.Message);
        Assert.Equal(before, Bytes(other));
    }

    [Fact]
    public void Truncated_or_long_states_are_refused()
    {
        var c = Function();
        var w = new StateWriter();
        w.Bytes(new byte[PciConfigSpace.Size - 1]);
        Assert.Throws<DeviceStateException>(() => c.LoadState(w.Written, 1));
        var w2 = new StateWriter();
        c.SaveState(w2);
        Assert.Throws<DeviceStateException>(() => c.LoadState(w2.Written, 2));
        byte[] longer = [.. w2.Written, 0];
        Assert.Throws<DeviceStateException>(() => c.LoadState(longer, 1));
    }

    [Fact]
    public void A_status_bit_the_device_reported_does_not_make_the_state_foreign()
    {
        var original = Function();
        original.SetWord(PciConfigSpace.StatusOffset, (ushort)(original.ReadWord(PciConfigSpace.StatusOffset) | 0x0008)); // interrupt status
        var restored = Function();
        DeviceStateRecord.Load(restored, DeviceStateRecord.Save(original));
        Assert.Equal(original.ReadWord(PciConfigSpace.StatusOffset), restored.ReadWord(PciConfigSpace.StatusOffset));
    }
}
