namespace Csvmm.Boot;

/// <summary>
/// Byte offsets of the fields csvmm uses in Linux's <c>struct boot_params</c> (the "zero page") and in the
/// <c>struct setup_header</c> embedded in it at 0x1F1 (arch/x86/include/uapi/asm/bootparam.h). The setup header
/// has the same offsets in a bzImage file as in the zero page. A test checks these against the real header with gcc.
/// </summary>
public static class BootParamsLayout
{
    /// <summary>sizeof(struct boot_params).</summary>
    public const int Size = 0x1000;

    // ---- struct boot_params ----

    /// <summary>u64 acpi_rsdp_addr: physical address of the ACPI RSDP (protocol 2.14+).</summary>
    public const int AcpiRsdpAddr = 0x070;
    /// <summary>u32 ext_ramdisk_image: bits 63:32 of the initrd address.</summary>
    public const int ExtRamdiskImage = 0x0C0;
    /// <summary>u32 ext_ramdisk_size: bits 63:32 of the initrd size.</summary>
    public const int ExtRamdiskSize = 0x0C4;
    /// <summary>u32 ext_cmd_line_ptr: bits 63:32 of the command line address.</summary>
    public const int ExtCmdLinePtr = 0x0C8;
    /// <summary>u8 e820_entries: number of valid entries in <see cref="E820Table"/>.</summary>
    public const int E820Entries = 0x1E8;
    /// <summary>u8 sentinel: 0xFF in the image; a loader that copies it reveals it copied too much.</summary>
    public const int Sentinel = 0x1EF;
    /// <summary>struct setup_header hdr.</summary>
    public const int Hdr = 0x1F1;
    /// <summary>First byte after the room boot_params leaves for the setup header (edd_mbr_sig_buffer).</summary>
    public const int HdrRoomEnd = 0x290;
    /// <summary>struct boot_e820_entry e820_table[128].</summary>
    public const int E820Table = 0x2D0;
    /// <summary>sizeof(struct boot_e820_entry): packed { u64 addr; u64 size; u32 type; }.</summary>
    public const int E820EntrySize = 20;
    /// <summary>E820_MAX_ENTRIES_ZEROPAGE.</summary>
    public const int E820MaxEntries = 128;

    // ---- struct setup_header (absolute offsets, in the image and in boot_params) ----

    /// <summary>u8 setup_sects: 512-byte setup sectors after the boot sector (0 means 4).</summary>
    public const int SetupSects = 0x1F1;
    /// <summary>u32 syssize: protected-mode kernel size in 16-byte paragraphs.</summary>
    public const int SysSize = 0x1F4;
    /// <summary>u16 vid_mode.</summary>
    public const int VidMode = 0x1FA;
    /// <summary>u16 boot_flag: 0xAA55.</summary>
    public const int BootFlag = 0x1FE;
    /// <summary>u16 jump: 0xEB and a rel8; the header ends at 0x202 + rel8.</summary>
    public const int Jump = 0x200;
    /// <summary>u32 header: "HdrS".</summary>
    public const int Header = 0x202;
    /// <summary>u16 version: boot protocol, major in the high byte.</summary>
    public const int Version = 0x206;
    /// <summary>u8 type_of_loader (written by the loader).</summary>
    public const int TypeOfLoader = 0x210;
    /// <summary>u8 loadflags.</summary>
    public const int LoadFlags = 0x211;
    /// <summary>u32 code32_start: where the protected-mode kernel was loaded.</summary>
    public const int Code32Start = 0x214;
    /// <summary>u32 ramdisk_image: initrd address (written by the loader).</summary>
    public const int RamdiskImage = 0x218;
    /// <summary>u32 ramdisk_size: initrd length (written by the loader).</summary>
    public const int RamdiskSize = 0x21C;
    /// <summary>u16 heap_end_ptr: end of the setup heap, relative to the real-mode code, minus 0x200.</summary>
    public const int HeapEndPtr = 0x224;
    /// <summary>u32 cmd_line_ptr: command line address (written by the loader).</summary>
    public const int CmdLinePtr = 0x228;
    /// <summary>u32 initrd_addr_max: highest address the initrd's last byte may occupy.</summary>
    public const int InitrdAddrMax = 0x22C;
    /// <summary>u32 kernel_alignment: alignment a relocatable kernel needs.</summary>
    public const int KernelAlignment = 0x230;
    /// <summary>u8 relocatable_kernel.</summary>
    public const int RelocatableKernel = 0x234;
    /// <summary>u16 xloadflags (protocol 2.12+).</summary>
    public const int XLoadFlags = 0x236;
    /// <summary>u32 cmdline_size: longest command line without its NUL.</summary>
    public const int CmdlineSize = 0x238;
    /// <summary>u64 pref_address: preferred load address (LOAD_PHYSICAL_ADDR).</summary>
    public const int PrefAddress = 0x258;
    /// <summary>u32 init_size: memory the kernel needs from its runtime start before reading the memory map.</summary>
    public const int InitSize = 0x260;
    /// <summary>u32 kernel_info_offset (protocol 2.15).</summary>
    public const int KernelInfoOffset = 0x268;
    /// <summary>End of the setup header as defined by protocol 2.15 (sizeof(struct setup_header) == 123).</summary>
    public const int HdrEnd = 0x26C;
}

/// <summary>Flag and magic values of the setup header.</summary>
public static class SetupFlags
{
    /// <summary>boot_flag value.</summary>
    public const ushort BootFlagMagic = 0xAA55;
    /// <summary>"HdrS", little-endian.</summary>
    public const uint HeaderMagic = 0x5372_6448;

    /// <summary>loadflags: the protected-mode kernel is loaded at 0x100000 (a bzImage).</summary>
    public const byte LoadedHigh = 1 << 0;
    /// <summary>loadflags: KASLR was done by the loader.</summary>
    public const byte KaslrFlag = 1 << 1;
    /// <summary>loadflags: suppress early messages.</summary>
    public const byte QuietFlag = 1 << 5;
    /// <summary>loadflags: do not reload segment registers at the 32-bit entry.</summary>
    public const byte KeepSegments = 1 << 6;
    /// <summary>loadflags: heap_end_ptr is valid.</summary>
    public const byte CanUseHeap = 1 << 7;

    /// <summary>xloadflags: the kernel has the legacy 64-bit entry point at load address + 0x200.</summary>
    public const ushort XlfKernel64 = 1 << 0;
    /// <summary>xloadflags: kernel, boot_params, command line and initrd may live above 4 GiB.</summary>
    public const ushort XlfCanBeLoadedAbove4G = 1 << 1;

    /// <summary>type_of_loader for a boot loader without an assigned id.</summary>
    public const byte LoaderUndefined = 0xFF;

    /// <summary>Offset of the 64-bit entry point from the protected-mode kernel's load address.</summary>
    public const ulong Entry64Offset = 0x200;
}
