using Csvmm.Acpi;
using Csvmm.Memory;
using static Csvmm.Acpi.Tests.GuestAcpi;

using Csvmm.Boot;

namespace Csvmm.Acpi.Tests;

public sealed class AcpiTablesTests
{
    private static (GuestMemory Memory, AcpiImage Image) WriteTables(AcpiConfig config)
    {
        var memory = AcpiTestPlatform.LowMemory();
        var image = AcpiTables.Write(memory, Layout.AcpiStart, Layout.AcpiMaxSize, config);
        return (memory, image);
    }

    [Fact]
    public void Rsdp_is_first_with_both_checksums_and_points_at_the_xsdt()
    {
        var (memory, image) = WriteTables(AcpiTestPlatform.Config());
        using var _ = memory;
        Assert.Equal(Layout.AcpiStart, image.Rsdp);
        var rsdp = new GuestAcpi(memory).Rsdp(image.Rsdp);
        Assert.Equal("RSD PTR ", Ascii(rsdp, 0, 8));
        Assert.Equal(0, Sum(rsdp.AsSpan(0, 20)));  // ACPI 1.0 checksum
        Assert.Equal(0, Sum(rsdp));                // extended checksum
        Assert.Equal("CSVMM ", Ascii(rsdp, 9, 6));
        Assert.Equal(2, rsdp[15]);                 // revision: ACPI 2.0+
        Assert.Equal(0u, U32(rsdp, 16));           // no RSDT
        Assert.Equal(36u, U32(rsdp, 20));
        Assert.Equal(image.Tables.Xsdt.Value, U64(rsdp, 24));
        Assert.Equal(0ul, image.Rsdp.Value % 16);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(8)]
    public void Every_table_sums_to_zero_has_its_size_in_its_length_field_and_stays_in_the_block(int cpus)
    {
        var (memory, image) = WriteTables(AcpiTestPlatform.Config(cpus));
        using var _ = memory;
        var tables = new GuestAcpi(memory).All(image.Rsdp);
        Assert.Equal(["APIC", "DSDT", "FACP", "FACS", "RSD PTR ", "XSDT"], tables.Keys.Order());

        foreach (var (sig, (_, bytes)) in tables)
        {
            if (sig == "FACS") continue; // no checksum
            Assert.True(Sum(bytes) == 0, $"{sig} does not sum to 0");
            if (sig == "RSD PTR ") continue;
            Assert.Equal((uint)bytes.Length, U32(bytes, 4));
            Assert.Equal("CSVMM ", Ascii(bytes, 10, 6));
            Assert.Equal("CSVMMVM ", Ascii(bytes, 16, 8));
            Assert.Equal("CSVM", Ascii(bytes, 28, 4));
        }
        // Sizes the spec fixes, independent of what the length fields say.
        Assert.Equal(276, tables["FACP"].Bytes.Length);
        Assert.Equal(36 + 2 * 8, tables["XSDT"].Bytes.Length);
        Assert.Equal(44 + 8 * cpus + 12 + 10 + 10 + 6, tables["APIC"].Bytes.Length);
        Assert.Equal(64, (int)U32(tables["FACS"].Bytes, 4));
        // The DSDT's length covers exactly its AML: the top-level terms decode to its end.
        Assert.Equal(2, AmlDecoder.TermList(tables["DSDT"].Bytes.AsSpan(36)).Count);

        // No two tables overlap, and all lie inside the block that was reported.
        var ranges = tables.Values.Select(t => (Start: t.Address, End: t.Address + (ulong)t.Bytes.Length)).OrderBy(r => r.Start).ToArray();
        Assert.Equal(image.Start.Value, ranges[0].Start);
        for (int i = 1; i < ranges.Length; i++) Assert.True(ranges[i - 1].End <= ranges[i].Start);
        Assert.Equal(image.Start.Value + (ulong)image.Size, ranges[^1].End);
    }

    [Fact]
    public void Xsdt_points_at_fadt_and_madt_and_fadt_at_dsdt_and_facs()
    {
        var (memory, image) = WriteTables(AcpiTestPlatform.Config());
        using var _ = memory;
        var acpi = new GuestAcpi(memory);
        var xsdt = acpi.Sdt(image.Tables.Xsdt.Value);
        Assert.Equal("XSDT", Signature(xsdt));
        Assert.Equal(1, xsdt[8]);
        var entries = XsdtEntries(xsdt);
        Assert.Equal(["FACP", "APIC"], entries.Select(e => Signature(acpi.Sdt(e))));

        var fadt = acpi.Sdt(entries[0]);
        ulong dsdt = U64(fadt, 140);
        Assert.Equal((uint)dsdt, U32(fadt, 40));            // DSDT and X_DSDT agree
        Assert.Equal("DSDT", Signature(acpi.Sdt(dsdt)));
        Assert.Equal(2, acpi.Sdt(dsdt)[8]);                 // revision 2: 64-bit AML integers

        uint facsAt = U32(fadt, 36);
        Assert.Equal(0ul, U64(fadt, 132));                  // X_FIRMWARE_CTRL must be 0 when FIRMWARE_CTRL is set
        Assert.Equal(0u, facsAt % 64);
        var facs = acpi.Facs(facsAt);
        Assert.Equal("FACS", Ascii(facs, 0, 4));
        Assert.Equal(64u, U32(facs, 4));
        Assert.Equal(2, facs[32]);                          // version
        Assert.Equal(0u, U32(facs, 12));                    // no waking vector
    }

    [Fact]
    public void Largest_configuration_fits_the_reserved_space()
    {
        var config = AcpiTestPlatform.Config(AcpiConfig.MaxCpuCount, PciRootConfig.MaxSlots);
        var image = AcpiTables.Build(Layout.AcpiStart, Layout.AcpiMaxSize, config);
        Assert.InRange(image.Size, 1, Layout.AcpiMaxSize);
        Assert.True(image.Start.Value + (ulong)image.Size <= 0x10_0000, "the tables run past the BIOS area");
    }

    [Fact]
    public void Tables_that_do_not_fit_throw_and_write_nothing()
    {
        using var memory = AcpiTestPlatform.LowMemory();
        int needed = AcpiTables.Build(Layout.AcpiStart, Layout.AcpiMaxSize, AcpiTestPlatform.Config()).Size;
        var e = Assert.Throws<AcpiException>(() => AcpiTables.Write(memory, Layout.AcpiStart, needed - 1, AcpiTestPlatform.Config()));
        Assert.Contains($"need {needed} bytes", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.True(memory.GetSpan(Layout.AcpiStart, needed).IndexOfAnyExcept((byte)0) < 0, "something was written");
        Assert.Equal(needed, AcpiTables.Write(memory, Layout.AcpiStart, needed, AcpiTestPlatform.Config()).Size);
    }

    [Fact]
    public void Block_outside_guest_memory_throws()
    {
        using var memory = AcpiTestPlatform.LowMemory();
        Assert.Throws<AcpiException>(() =>
            AcpiTables.Write(memory, new GuestAddress(0xFFF00), Layout.AcpiMaxSize, AcpiTestPlatform.Config()));
    }

    [Theory]
    [InlineData(0xE0008UL)]
    [InlineData(0xE0001UL)]
    public void Unaligned_start_throws(ulong start) =>
        Assert.Throws<AcpiException>(() => AcpiTables.Build(new GuestAddress(start), Layout.AcpiMaxSize, AcpiTestPlatform.Config()));

    [Fact]
    public void Start_near_the_top_of_the_address_space_throws_instead_of_wrapping() =>
        Assert.Throws<AcpiException>(() => AcpiTables.Build(new GuestAddress(0xFFFF_FFFF_FFFF_FF00), Layout.AcpiMaxSize, AcpiTestPlatform.Config()));

    public static TheoryData<string, Func<AcpiConfig, AcpiConfig>> InvalidConfigs => new()
    {
        { "no vCPU", c => c with { CpuCount = 0 } },
        { "too many vCPUs", c => c with { CpuCount = 255 } },
        { "broadcast I/O APIC ID", c => c with { IoApicId = 0xFF } },
        { "APIC above 4 GiB", c => c with { IoApicAddress = new GuestAddress(0x1_0000_0000) } },
        { "no PM1a event block", c => c with { Pm1aEventBlock = 0 } },
        { "PM timer past 0xFFFF", c => c with { PmTimerBlock = 0xFFFE } },
        { "SCI not ISA", c => c with { SciIrq = 16 } },
        { "SLP_TYP wider than 3 bits", c => c with { S5SleepType = 8 } },
        { "COM1 IRQ not ISA", c => c with { Com1 = new LegacySerialPort(0x3F8, 16) } },
        { "no PCI slot", c => c with { PciRoot = c.PciRoot! with { SlotCount = 0 } } },
        { "33 PCI slots", c => c with { PciRoot = c.PciRoot! with { SlotCount = 33 } } },
        { "empty MMIO window", c => c with { PciRoot = c.PciRoot! with { MmioEnd = c.PciRoot.MmioStart } } },
        { "MMIO window above 4 GiB", c => c with { PciRoot = c.PciRoot! with { MmioEnd = new GuestAddress(0x1_0000_1000) } } },
        { "no I/O window", c => c with { PciRoot = c.PciRoot! with { IoWindows = [] } } },
        { "I/O window of 64 Ki ports", c => c with { PciRoot = c.PciRoot! with { IoWindows = [new IoPortRange(0, 0xFFFF)] } } },
    };

    [Theory]
    [MemberData(nameof(InvalidConfigs))]
    public void Invalid_configurations_throw_one_line_messages(string what, Func<AcpiConfig, AcpiConfig> change)
    {
        var e = Assert.Throws<AcpiException>(() => AcpiTables.Build(Layout.AcpiStart, Layout.AcpiMaxSize, change(AcpiTestPlatform.Config())));
        Assert.False(string.IsNullOrWhiteSpace(e.Message), what);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Build_is_deterministic()
    {
        var a = AcpiTables.Build(Layout.AcpiStart, Layout.AcpiMaxSize, AcpiTestPlatform.Config(4));
        var b = AcpiTables.Build(Layout.AcpiStart, Layout.AcpiMaxSize, AcpiTestPlatform.Config(4));
        Assert.Equal(a.Bytes.ToArray(), b.Bytes.ToArray());
        Assert.Equal(a.Tables, b.Tables);
    }
}
