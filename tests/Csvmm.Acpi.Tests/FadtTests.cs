using Csvmm.Acpi;
using Csvmm.Acpi.Tables;
using Csvmm.Memory;
using static Csvmm.Acpi.Tests.GuestAcpi;

namespace Csvmm.Acpi.Tests;

/// <summary>FADT fields at the offsets of ACPI 6.3 table 5-33.</summary>
public sealed class FadtTests
{
    private static readonly GuestAddress FacsAt = new(0xE0040);
    private static readonly GuestAddress DsdtAt = new(0xE0080);
    private static readonly byte[] Table = Fadt.Build(AcpiTestPlatform.Config(), FacsAt, DsdtAt);

    private static void AssertIoGas(int offset, int bitWidth, int accessSize, ulong port)
    {
        Assert.Equal(1, Table[offset]);              // SystemIO
        Assert.Equal(bitWidth, Table[offset + 1]);
        Assert.Equal(0, Table[offset + 2]);          // bit offset
        Assert.Equal(accessSize, Table[offset + 3]);
        Assert.Equal(port, U64(Table, offset + 4));
    }

    [Fact]
    public void Header_and_pointers()
    {
        Assert.Equal("FACP", Signature(Table));
        Assert.Equal(276u, U32(Table, 4));
        Assert.Equal(6, Table[8]);
        Assert.Equal(3, Table[131]);                 // minor version: 6.3
        Assert.Equal(0, Sum(Table));
        Assert.Equal(0xE0040u, U32(Table, 36));      // FIRMWARE_CTRL
        Assert.Equal(0ul, U64(Table, 132));          // X_FIRMWARE_CTRL
        Assert.Equal(0xE0080u, U32(Table, 40));      // DSDT
        Assert.Equal(0xE0080ul, U64(Table, 140));    // X_DSDT
    }

    [Fact]
    public void Pm_blocks_in_legacy_fields_and_gas()
    {
        Assert.Equal(9, U16(Table, 46));             // SCI_INT
        Assert.Equal(0u, U32(Table, 48));            // SMI_CMD: none, always in ACPI mode
        Assert.Equal(0x600u, U32(Table, 56));        // PM1a_EVT_BLK
        Assert.Equal(0u, U32(Table, 60));            // PM1b_EVT_BLK
        Assert.Equal(0x604u, U32(Table, 64));        // PM1a_CNT_BLK
        Assert.Equal(0x608u, U32(Table, 76));        // PM_TMR_BLK
        Assert.Equal(0u, U32(Table, 80));            // GPE0_BLK
        Assert.Equal(4, Table[88]);                  // PM1_EVT_LEN
        Assert.Equal(2, Table[89]);                  // PM1_CNT_LEN
        Assert.Equal(4, Table[91]);                  // PM_TMR_LEN
        Assert.Equal(0, Table[92]);                  // GPE0_BLK_LEN
        AssertIoGas(148, 32, 2, 0x600);              // X_PM1a_EVT_BLK
        AssertIoGas(172, 16, 2, 0x604);              // X_PM1a_CNT_BLK
        AssertIoGas(208, 32, 3, 0x608);              // X_PM_TMR_BLK
        Assert.All(new[] { 160, 184, 196, 220, 232, 244, 256 }, o => Assert.Equal(0ul, U64(Table, o) | U32(Table, o + 8)));
    }

    [Fact]
    public void Reset_register_flags_and_boot_architecture()
    {
        AssertIoGas(116, 8, 1, 0xCF9);               // RESET_REG
        Assert.Equal(0x06, Table[128]);              // RESET_VALUE
        // WBINVD | PROC_C1 | PWR_BUTTON | SLP_BUTTON | RESET_REG_SUP
        Assert.Equal((1u << 0) | (1u << 2) | (1u << 4) | (1u << 5) | (1u << 10), U32(Table, 112));
        Assert.Equal(0x0006, U16(Table, 109));       // IAPC_BOOT_ARCH: 8042 | VGA not present
        Assert.Equal("CSVMM\0\0\0", Ascii(Table, 268, 8));
    }

    [Fact]
    public void Configured_reset_register_and_sci_are_used()
    {
        var config = AcpiTestPlatform.Config() with { ResetPort = 0x92, ResetValue = 0x01, SciIrq = 10 };
        var t = Fadt.Build(config, FacsAt, DsdtAt);
        Assert.Equal(0x92ul, U64(t, 120));
        Assert.Equal(0x01, t[128]);
        Assert.Equal(10, U16(t, 46));
        Assert.Equal(0, Sum(t));
    }

    [Fact]
    public void Facs_above_4_GiB_goes_in_x_firmware_ctrl_only()
    {
        var t = Fadt.Build(AcpiTestPlatform.Config(), new GuestAddress(0x1_0000_0040), new GuestAddress(0x1_0000_0080));
        Assert.Equal(0u, U32(t, 36));
        Assert.Equal(0x1_0000_0040ul, U64(t, 132));
        Assert.Equal(0u, U32(t, 40));
        Assert.Equal(0x1_0000_0080ul, U64(t, 140));
    }
}
