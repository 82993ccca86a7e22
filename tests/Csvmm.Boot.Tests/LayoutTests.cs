using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Csvmm.TestSupport;

namespace Csvmm.Boot.Tests;

public sealed class LayoutTests
{
    /// <summary>The fixed boot structures below 1 MiB must not overlap each other.</summary>
    [Fact]
    public void Low_boot_structures_do_not_overlap()
    {
        (string Name, ulong Start, ulong Size)[] areas =
        [
            ("gdt", Layout.BootGdt.Value, BootGdt.EntryCount * 8),
            ("idt", Layout.BootIdt.Value, BootGdt.IdtBytes),
            ("pvh start info", Layout.PvhStartInfo.Value, PvhLoader.AreaSize),
            ("zero page", Layout.ZeroPage.Value, BootParamsLayout.Size),
            ("pml4", Layout.Pml4.Value, 0x1000),
            ("pdpt", Layout.Pdpt.Value, 0x1000),
            ("page dirs", Layout.PageDirs.Value, BootPageTables.PageDirectoryCount * 0x1000UL),
            ("cmdline", Layout.Cmdline.Value, Layout.CmdlineMax),
        ];
        var sorted = areas.OrderBy(a => a.Start).ToArray();
        for (int i = 1; i < sorted.Length; i++)
            Assert.True(sorted[i - 1].Start + sorted[i - 1].Size <= sorted[i].Start, $"{sorted[i - 1].Name} overlaps {sorted[i].Name}");
        Assert.True(sorted[^1].Start + sorted[^1].Size <= Layout.EbdaStart.Value, "boot structures run into the EBDA");
    }

    [Fact]
    public void Pvh_structures_match_start_info_h()
    {
        Assert.Equal(56, Unsafe.SizeOf<HvmStartInfo>());
        Assert.Equal(32, Unsafe.SizeOf<HvmModlistEntry>());
        Assert.Equal(24, Unsafe.SizeOf<HvmMemmapTableEntry>());
        Assert.Equal(16, (int)Marshal.OffsetOf<HvmStartInfo>(nameof(HvmStartInfo.ModlistPaddr)));
        Assert.Equal(32, (int)Marshal.OffsetOf<HvmStartInfo>(nameof(HvmStartInfo.RsdpPaddr)));
        Assert.Equal(40, (int)Marshal.OffsetOf<HvmStartInfo>(nameof(HvmStartInfo.MemmapPaddr)));
        Assert.Equal(48, (int)Marshal.OffsetOf<HvmStartInfo>(nameof(HvmStartInfo.MemmapEntries)));
        Assert.Equal(16, (int)Marshal.OffsetOf<HvmMemmapTableEntry>(nameof(HvmMemmapTableEntry.Type)));
        Assert.True(PvhLoader.ModlistOffset >= 56 && PvhLoader.ModlistOffset + 32 <= PvhLoader.MemmapOffset);
    }

    /// <summary>Proves <see cref="BootParamsLayout"/> against the system's asm/bootparam.h by compiling static asserts.</summary>
    [Fact]
    public void Boot_params_offsets_match_the_kernel_header()
    {
        const string header = "/usr/include/x86_64-linux-gnu/asm/bootparam.h";
        // A proof that cannot run is a failure, not a skip: the bindings would go unchecked (Gcc fails without gcc).
        Assert.True(File.Exists(header), $"{header} is missing: the layout proofs need linux-libc-dev (./build.sh installs it)");

        (int Value, string Expression)[] checks =
        [
            (BootParamsLayout.Size, "sizeof(struct boot_params)"),
            (BootParamsLayout.AcpiRsdpAddr, "offsetof(struct boot_params, acpi_rsdp_addr)"),
            (BootParamsLayout.ExtRamdiskImage, "offsetof(struct boot_params, ext_ramdisk_image)"),
            (BootParamsLayout.ExtRamdiskSize, "offsetof(struct boot_params, ext_ramdisk_size)"),
            (BootParamsLayout.ExtCmdLinePtr, "offsetof(struct boot_params, ext_cmd_line_ptr)"),
            (BootParamsLayout.E820Entries, "offsetof(struct boot_params, e820_entries)"),
            (BootParamsLayout.Sentinel, "offsetof(struct boot_params, sentinel)"),
            (BootParamsLayout.Hdr, "offsetof(struct boot_params, hdr)"),
            (BootParamsLayout.HdrRoomEnd, "offsetof(struct boot_params, edd_mbr_sig_buffer)"),
            (BootParamsLayout.E820Table, "offsetof(struct boot_params, e820_table)"),
            (BootParamsLayout.E820EntrySize, "sizeof(struct boot_e820_entry)"),
            (BootParamsLayout.E820MaxEntries, "E820_MAX_ENTRIES_ZEROPAGE"),
            (BootParamsLayout.HdrEnd, "offsetof(struct boot_params, hdr) + sizeof(struct setup_header)"),
            (BootParamsLayout.SetupSects, "H(setup_sects)"),
            (BootParamsLayout.SysSize, "H(syssize)"),
            (BootParamsLayout.VidMode, "H(vid_mode)"),
            (BootParamsLayout.BootFlag, "H(boot_flag)"),
            (BootParamsLayout.Jump, "H(jump)"),
            (BootParamsLayout.Header, "H(header)"),
            (BootParamsLayout.Version, "H(version)"),
            (BootParamsLayout.TypeOfLoader, "H(type_of_loader)"),
            (BootParamsLayout.LoadFlags, "H(loadflags)"),
            (BootParamsLayout.Code32Start, "H(code32_start)"),
            (BootParamsLayout.RamdiskImage, "H(ramdisk_image)"),
            (BootParamsLayout.RamdiskSize, "H(ramdisk_size)"),
            (BootParamsLayout.HeapEndPtr, "H(heap_end_ptr)"),
            (BootParamsLayout.CmdLinePtr, "H(cmd_line_ptr)"),
            (BootParamsLayout.InitrdAddrMax, "H(initrd_addr_max)"),
            (BootParamsLayout.KernelAlignment, "H(kernel_alignment)"),
            (BootParamsLayout.RelocatableKernel, "H(relocatable_kernel)"),
            (BootParamsLayout.XLoadFlags, "H(xloadflags)"),
            (BootParamsLayout.CmdlineSize, "H(cmdline_size)"),
            (BootParamsLayout.PrefAddress, "H(pref_address)"),
            (BootParamsLayout.InitSize, "H(init_size)"),
            (BootParamsLayout.KernelInfoOffset, "H(kernel_info_offset)"),
            (SetupFlags.LoadedHigh, "LOADED_HIGH"),
            (SetupFlags.CanUseHeap, "CAN_USE_HEAP"),
            (SetupFlags.KeepSegments, "KEEP_SEGMENTS"),
            (SetupFlags.XlfKernel64, "XLF_KERNEL_64"),
            (SetupFlags.XlfCanBeLoadedAbove4G, "XLF_CAN_BE_LOADED_ABOVE_4G"),
        ];
        var c = new StringBuilder("#include <stddef.h>\n#include <asm/bootparam.h>\n#define H(f) (offsetof(struct boot_params, hdr) + offsetof(struct setup_header, f))\n");
        foreach (var (value, expression) in checks)
            c.Append($"_Static_assert(({expression}) == {value}, \"{expression.Replace("\"", "")} != {value}\");\n");

        Gcc.AssertCompiles(c.ToString(), "the boot_params static asserts");
    }
}
