using System.Buffers.Binary;
using System.Text;
using Csvmm.Acpi;
using Csvmm.Memory;

using Csvmm.Boot;

namespace Csvmm.Acpi.Tests;

/// <summary>csvmm's ACPI configuration, taken from <see cref="Layout"/> the way the machine builder takes it.</summary>
internal static class AcpiTestPlatform
{
    public static AcpiConfig Config(int cpus = 2, int slots = 4, bool pci = true, bool com1 = true) => new()
    {
        CpuCount = cpus,
        LocalApicAddress = Layout.LocalApic,
        IoApicAddress = Layout.IoApic,
        IoApicId = (byte)cpus,
        Pm1aEventBlock = Layout.AcpiPm1aEvent,
        Pm1aControlBlock = Layout.AcpiPm1aControl,
        PmTimerBlock = Layout.AcpiPmTimer,
        SciIrq = (byte)Layout.AcpiSciIrq,
        S5SleepType = (byte)Layout.SlpTypS5,
        ResetPort = Layout.ResetControl,
        ResetValue = 0x06,
        Com1 = com1 ? new LegacySerialPort(Layout.Com1, (byte)Layout.Com1Irq) : null,
        PciRoot = pci
            ? new PciRootConfig { MmioStart = Layout.PciMmioStart, MmioEnd = Layout.PciMmioEnd, SlotCount = slots }
            : null,
    };

    /// <summary>1 MiB of guest RAM from address 0 (holds 0xE0000-0xFFFFF).</summary>
    public static GuestMemory LowMemory()
    {
        var memory = new GuestMemory();
        memory.AddRegion(GuestAddress.Zero, 0x10_0000, "ram");
        return memory;
    }
}

/// <summary>
/// Reads tables back out of guest memory by following the pointers, with the ACPI spec's offsets written here as
/// literals (independent of the builders' constants).
/// </summary>
internal sealed class GuestAcpi(GuestMemory memory)
{
    public byte[] Rsdp(GuestAddress at) => memory.GetSpan(at, 36).ToArray();

    /// <summary>A System Description Table: its header's length field says how much to read.</summary>
    public byte[] Sdt(ulong address)
    {
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(memory.GetSpan(new GuestAddress(address), 36)[4..]);
        Assert.InRange(length, 36u, 0x10000u);
        return memory.GetSpan(new GuestAddress(address), (int)length).ToArray();
    }

    public byte[] Facs(ulong address) => memory.GetSpan(new GuestAddress(address), 64).ToArray();

    /// <summary>The XSDT's entries.</summary>
    public static ulong[] XsdtEntries(byte[] xsdt)
    {
        var entries = new ulong[(xsdt.Length - 36) / 8];
        for (int i = 0; i < entries.Length; i++) entries[i] = U64(xsdt, 36 + 8 * i);
        return entries;
    }

    /// <summary>Every table reachable from the RSDP, by signature.</summary>
    public Dictionary<string, (ulong Address, byte[] Bytes)> All(GuestAddress rsdpAt)
    {
        var rsdp = Rsdp(rsdpAt);
        var tables = new Dictionary<string, (ulong, byte[])> { ["RSD PTR "] = (rsdpAt.Value, rsdp) };
        ulong xsdtAt = U64(rsdp, 24);
        var xsdt = Sdt(xsdtAt);
        tables["XSDT"] = (xsdtAt, xsdt);
        foreach (ulong at in XsdtEntries(xsdt))
        {
            var t = Sdt(at);
            tables[Signature(t)] = (at, t);
        }
        var fadt = tables["FACP"].Item2;
        ulong dsdtAt = U64(fadt, 140);
        tables["DSDT"] = (dsdtAt, Sdt(dsdtAt));
        ulong facsAt = U32(fadt, 36);
        tables["FACS"] = (facsAt, Facs(facsAt));
        return tables;
    }

    public static string Signature(byte[] table) => Encoding.ASCII.GetString(table, 0, 4);
    public static string Ascii(byte[] b, int offset, int length) => Encoding.ASCII.GetString(b, offset, length);
    public static ushort U16(byte[] b, int offset) => BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(offset));
    public static uint U32(byte[] b, int offset) => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(offset));
    public static ulong U64(byte[] b, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(offset));

    public static byte Sum(ReadOnlySpan<byte> bytes)
    {
        int sum = 0;
        foreach (byte b in bytes) sum += b;
        return (byte)sum;
    }
}
