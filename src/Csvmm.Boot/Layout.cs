using Csvmm.Memory;

namespace Csvmm.Boot;

/// <summary>
/// Every fixed guest-physical address and port of csvmm's x86-64 PC platform, in one place.
/// The machine builder, the loaders and the table builders all take their addresses from here.
/// </summary>
public static class Layout
{
    // ---- low memory (below 1 MiB) -------------------------------------------------------------
    /// <summary>Boot GDT used for direct 64-bit and PVH 32-bit entry.</summary>
    public static readonly GuestAddress BootGdt = new(0x500);
    /// <summary>Empty boot IDT (limit 0) for the direct entries; after the 5-entry boot GDT (0x500-0x527).</summary>
    public static readonly GuestAddress BootIdt = new(0x540);
    /// <summary>PVH hvm_start_info, followed by its module list and memory map.</summary>
    public static readonly GuestAddress PvhStartInfo = new(0x6000);
    /// <summary>Linux boot_params ("zero page").</summary>
    public static readonly GuestAddress ZeroPage = new(0x7000);
    /// <summary>Identity page tables for direct 64-bit entry: PML4, PDPT, then 4 page directories (4 GiB of 2 MiB pages).</summary>
    public static readonly GuestAddress Pml4 = new(0x9000);
    public static readonly GuestAddress Pdpt = new(0xA000);
    public static readonly GuestAddress PageDirs = new(0xB000); // 4 pages: 0xB000-0xEFFF
    /// <summary>Kernel command line (NUL-terminated), at most <see cref="CmdlineMax"/> bytes including the NUL.</summary>
    public static readonly GuestAddress Cmdline = new(0x20000);
    public const int CmdlineMax = 0x10000;
    /// <summary>End of conventional memory: [0, EbdaStart) is usable RAM in the E820 map.</summary>
    public static readonly GuestAddress EbdaStart = new(0x9FC00);
    /// <summary>Legacy VGA/option-ROM/BIOS hole [0xA0000, 1 MiB): reserved in E820.</summary>
    public static readonly GuestAddress LegacyHoleStart = new(0xA0000);
    /// <summary>ACPI tables for direct kernel boot (RSDP first; searched by Linux in 0xE0000-0xFFFFF).</summary>
    public static readonly GuestAddress AcpiStart = new(0xE0000);
    public const int AcpiMaxSize = 0x10000;
    /// <summary>Low alias of the firmware's last 128 KiB (0xE0000-0xFFFFF) for --firmware.</summary>
    public static readonly GuestAddress BiosLowAlias = new(0xE0000);
    public const ulong BiosLowAliasSize = 0x20000;
    public static readonly GuestAddress HighMemoryStart = new(0x100000);

    // ---- kernel -----------------------------------------------------------------------------------
    /// <summary>Where a bzImage's protected-mode part is loaded (the boot protocol's default).</summary>
    public static readonly GuestAddress KernelLoad = new(0x100000);

    // ---- 32-bit hole below 4 GiB --------------------------------------------------------------------
    /// <summary>RAM below 4 GiB ends here when the guest has more; [MmioHoleStart, 4 GiB) is MMIO.</summary>
    public static readonly GuestAddress MmioHoleStart = new(0xC000_0000);
    public static readonly GuestAddress FourGiB = new(0x1_0000_0000);
    /// <summary>32-bit PCI BAR window handed out by the device manager.</summary>
    public static readonly GuestAddress PciMmioStart = new(0xC000_0000);
    /// <summary>End (exclusive) of that window: the IOAPIC. SeaBIOS places BARs top-down from here, as on QEMU.</summary>
    public static readonly GuestAddress PciMmioEnd = new(0xFEC0_0000);
    /// <summary>PCI I/O BAR window [PciIoStart, PciIoEnd] decoded by the BAR router (the ACPI _CRS says the same).</summary>
    public const ushort PciIoStart = 0x1000;
    public const ushort PciIoEnd = 0xFFFF;
    /// <summary>KVM_SET_IDENTITY_MAP_ADDR (one page) and KVM_SET_TSS_ADDR (three pages), as QEMU places them.</summary>
    public static readonly GuestAddress IdentityMap = new(0xFEFF_C000);
    public static readonly GuestAddress TssAddress = new(0xFEFF_D000);
    public static readonly GuestAddress IoApic = new(0xFEC0_0000);
    public static readonly GuestAddress LocalApic = new(0xFEE0_0000);

    // ---- ports -------------------------------------------------------------------------------------
    public const ushort Com1 = 0x3F8;
    public const int Com1Irq = 4;
    public const ushort I8042Data = 0x60;
    public const ushort I8042Command = 0x64;
    public const ushort CmosIndex = 0x70;
    public const ushort PciConfigAddress = 0xCF8; // 0xCF8-0xCFF; a byte write to 0xCF9 is the PIIX reset control
    public const ushort ResetControl = 0xCF9;
    public const ushort AcpiPm1aEvent = 0x600;    // 4 bytes: PM1a_STS (2) + PM1a_EN (2)
    public const ushort AcpiPm1aControl = 0x604;  // 2 bytes
    public const ushort AcpiPmTimer = 0x608;      // 4 bytes, 3.579545 MHz, 24-bit
    public const int AcpiSciIrq = 9;
    /// <summary>SLP_TYP value for S5 written to PM1a_CNT (the DSDT's \_S5 package says the same).</summary>
    public const int SlpTypS5 = 5;

    // ---- PCI slots -----------------------------------------------------------------------------------
    /// <summary>00:01.1: the PIIX3 IDE function (present when an if=ide disk is attached).</summary>
    public const int IdePciDevice = 1, IdePciFunction = 1;
    /// <summary>virtio-blk disks take slots from here up, one function 0 each.</summary>
    public const int FirstVirtioPciDevice = 2;
    /// <summary>Legacy IDE: primary channel ports 0x1F0-0x1F7 + 0x3F6 on IRQ 14, secondary 0x170-0x177 + 0x376 on IRQ 15.</summary>
    public const ushort IdePrimaryCommand = 0x1F0, IdePrimaryControl = 0x3F6, IdeSecondaryCommand = 0x170, IdeSecondaryControl = 0x376;
    public const int IdePrimaryIrq = 14, IdeSecondaryIrq = 15;
}
