using Csvmm.Acpi.Tables;
using static Csvmm.Acpi.Tests.GuestAcpi;

namespace Csvmm.Acpi.Tests;

/// <summary>MADT structures at the offsets of ACPI 6.3 section 5.2.12.</summary>
public sealed class MadtTests
{
    private static List<(byte Type, byte[] Bytes)> Entries(byte[] madt)
    {
        var list = new List<(byte, byte[])>();
        int at = 44;
        while (at < madt.Length)
        {
            byte length = madt[at + 1];
            Assert.True(length >= 2, $"entry at {at} has length {length}");
            list.Add((madt[at], madt.AsSpan(at, length).ToArray()));
            at += length;
        }
        Assert.Equal(madt.Length, at); // the entries fill the table exactly
        return list;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(8)]
    public void One_enabled_local_apic_per_vcpu(int cpus)
    {
        var madt = Madt.Build(AcpiTestPlatform.Config(cpus));
        Assert.Equal("APIC", Signature(madt));
        Assert.Equal(0, Sum(madt));
        Assert.Equal(0xFEE0_0000u, U32(madt, 36));
        Assert.Equal(1u, U32(madt, 40));            // PCAT_COMPAT

        var lapics = Entries(madt).Where(e => e.Type == 0).Select(e => e.Bytes).ToArray();
        Assert.Equal(cpus, lapics.Length);
        for (int i = 0; i < cpus; i++)
        {
            Assert.Equal(8, lapics[i][1]);
            Assert.Equal(i, lapics[i][2]);          // ACPI processor UID
            Assert.Equal(i, lapics[i][3]);          // APIC ID
            Assert.Equal(1u, U32(lapics[i], 4));    // enabled
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(8)]
    public void Io_apic_overrides_and_nmi(int cpus)
    {
        var entries = Entries(Madt.Build(AcpiTestPlatform.Config(cpus)));
        Assert.Equal(cpus + 4, entries.Count);

        var ioapic = Assert.Single(entries, e => e.Type == 1).Bytes;
        Assert.Equal(12, ioapic[1]);
        Assert.Equal(cpus, ioapic[2]);              // I/O APIC ID = vCPU count
        Assert.Equal(0xFEC0_0000u, U32(ioapic, 4));
        Assert.Equal(0u, U32(ioapic, 8));           // GSI base

        var overrides = entries.Where(e => e.Type == 2).Select(e => e.Bytes).ToArray();
        Assert.Equal(2, overrides.Length);
        Assert.All(overrides, o => Assert.Equal(10, o[1]));
        Assert.All(overrides, o => Assert.Equal(0, o[2])); // bus ISA
        Assert.Equal((0, 2u, 0), (overrides[0][3], U32(overrides[0], 4), U16(overrides[0], 8)));       // IRQ0 -> GSI2, conforming
        Assert.Equal((9, 9u, 0x000D), (overrides[1][3], U32(overrides[1], 4), U16(overrides[1], 8)));  // SCI: level, active high

        var nmi = Assert.Single(entries, e => e.Type == 4).Bytes;
        Assert.Equal(6, nmi[1]);
        Assert.Equal(0xFF, nmi[2]);                 // all processors
        Assert.Equal(0, U16(nmi, 3));
        Assert.Equal(1, nmi[5]);                    // LINT1
    }
}
