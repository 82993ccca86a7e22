using Csvmm.Acpi;
using Csvmm.Acpi.Tables;
using static Csvmm.Acpi.Tests.GuestAcpi;

namespace Csvmm.Acpi.Tests;

/// <summary>The DSDT's namespace, read back with the test's own AML decoder.</summary>
public sealed class DsdtTests
{
    private static List<object> Terms(AcpiConfig config)
    {
        var dsdt = Dsdt.Build(config);
        Assert.Equal("DSDT", Signature(dsdt));
        Assert.Equal((uint)dsdt.Length, U32(dsdt, 4));
        Assert.Equal(0, Sum(dsdt));
        return AmlDecoder.TermList(dsdt.AsSpan(36));
    }

    private static DecodedScope SystemBus(AcpiConfig config) =>
        Assert.IsType<DecodedScope>(Terms(config).Single(t => t is DecodedScope { Path: @"\_SB_" }));

    [Fact]
    public void S5_package_holds_the_configured_sleep_type()
    {
        var s5 = Assert.IsType<DecodedName>(Terms(AcpiTestPlatform.Config())[0]);
        Assert.Equal(@"\_S5_", s5.Path);
        Assert.Equal(new object[] { 5UL, 5UL, 0UL, 0UL }, Assert.IsType<List<object>>(s5.Value));

        var other = Assert.IsType<DecodedName>(Terms(AcpiTestPlatform.Config() with { S5SleepType = 7 })[0]);
        Assert.Equal(new object[] { 7UL, 7UL, 0UL, 0UL }, Assert.IsType<List<object>>(other.Value));
    }

    [Fact]
    public void Pci_root_bridge_identity()
    {
        var pci = SystemBus(AcpiTestPlatform.Config()).Child("PCI0");
        Assert.Equal("Device", pci.Kind);
        Assert.Equal(0x030AD041UL, pci.Value("_HID"));     // EISAID("PNP0A03")
        Assert.Equal(0UL, pci.Value("_UID"));
        Assert.Equal(0UL, pci.Value("_SEG"));
        Assert.Equal(0UL, pci.Value("_BBN"));
        Assert.DoesNotContain(pci.Terms, t => t is DecodedMethod);
    }

    [Fact]
    public void Pci_root_bridge_resources()
    {
        var crs = Assert.IsType<byte[]>(SystemBus(AcpiTestPlatform.Config()).Child("PCI0").Value("_CRS"));
        var resources = AmlDecoder.Resources(crs);
        Assert.Equal([0x88, 0x88, 0x88, 0x47, 0x87], resources.Select(r => r.Tag));

        // Word address space bodies: type, general flags, type flags, _GRA, _MIN, _MAX, _TRA, _LEN.
        static (int, int, int, ushort, ushort, ushort) Word(byte[] b) =>
            (b[0], b[1], b[2], U16(b, 5), U16(b, 7), U16(b, 11));
        Assert.Equal((2, 0x0C, 0, 0x0000, 0x00FF, 0x0100), Word(resources[0].Body));   // bus 0-255
        Assert.Equal((1, 0x0C, 3, 0x0000, 0x0CF7, 0x0CF8), Word(resources[1].Body));   // I/O below the config ports
        Assert.Equal((1, 0x0C, 3, 0x0D00, 0xFFFF, 0xF300), Word(resources[2].Body));   // and above them
        Assert.Equal(new byte[] { 0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08 }, resources[3].Body); // IO (0xCF8, 8)
        var mem = resources[4].Body;
        Assert.Equal((0, 0x0C, 1), (mem[0], mem[1], mem[2]));                         // memory, producer, RW non-cacheable
        Assert.Equal((0xC000_0000u, 0xFEBF_FFFFu, 0x3EC0_0000u), (U32(mem, 7), U32(mem, 11), U32(mem, 19)));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(32)]
    public void Prt_is_a_literal_package_with_four_entries_per_slot(int slots)
    {
        var prt = Assert.IsType<List<object>>(SystemBus(AcpiTestPlatform.Config(slots: slots)).Child("PCI0").Value("_PRT"));
        Assert.Equal(4 * slots, prt.Count);
        for (int slot = 0; slot < slots; slot++)
        {
            for (int pin = 0; pin < 4; pin++)
            {
                var entry = Assert.IsType<List<object>>(prt[slot * 4 + pin]);
                ulong gsi = 16 + (ulong)((slot + pin) % 4);
                Assert.Equal(new object[] { ((ulong)slot << 16) | 0xFFFF, (ulong)pin, 0UL, gsi }, entry);
            }
        }
    }

    [Fact]
    public void Prt_uses_the_configured_mapping()
    {
        var c = AcpiTestPlatform.Config(slots: 2);
        var config = c with { PciRoot = c.PciRoot! with { Gsi = (slot, pin) => (uint)(100 * slot + pin) } };
        var prt = Assert.IsType<List<object>>(SystemBus(config).Child("PCI0").Value("_PRT"));
        Assert.Equal(new ulong[] { 0, 1, 2, 3, 100, 101, 102, 103 }, prt.Select(e => (ulong)((List<object>)e)[3]));
    }

    [Fact]
    public void Com1_device()
    {
        var com1 = SystemBus(AcpiTestPlatform.Config()).Child("COM1");
        Assert.Equal(0x0105D041UL, com1.Value("_HID"));    // EISAID("PNP0501")
        Assert.Equal(0UL, com1.Value("_UID"));
        var resources = AmlDecoder.Resources(Assert.IsType<byte[]>(com1.Value("_CRS")));
        Assert.Equal(2, resources.Count);
        Assert.Equal((byte)0x47, resources[0].Tag);
        Assert.Equal(new byte[] { 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08 }, resources[0].Body);
        Assert.Equal((byte)0x22, resources[1].Tag);
        Assert.Equal(1 << 4, U16(resources[1].Body, 0));    // IRQ 4
    }

    [Fact]
    public void Without_pci_or_com1_only_s5_remains()
    {
        var terms = Terms(AcpiTestPlatform.Config(pci: false, com1: false));
        Assert.Equal(@"\_S5_", Assert.IsType<DecodedName>(Assert.Single(terms)).Path);
        var onlyCom1 = SystemBus(AcpiTestPlatform.Config(pci: false));
        Assert.Equal("COM1", Assert.IsType<DecodedScope>(Assert.Single(onlyCom1.Terms)).Path);
    }

    [Fact]
    public void Dsdt_stays_small_with_32_slots()
    {
        var dsdt = Dsdt.Build(AcpiTestPlatform.Config(slots: 32));
        Assert.InRange(dsdt.Length, 36, 4096);
    }
}
