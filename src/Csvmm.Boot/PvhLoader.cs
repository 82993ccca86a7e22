using System.Runtime.CompilerServices;
using Csvmm.Memory;

namespace Csvmm.Boot;

/// <summary>
/// Loads an ELF vmlinux for the PVH boot protocol: PT_LOAD segments at their physical addresses, the command line
/// at <see cref="Layout.Cmdline"/>, hvm_start_info at <see cref="Layout.PvhStartInfo"/> followed by the module list
/// (<see cref="ModlistOffset"/>) and the memory map (<see cref="MemmapOffset"/>). Everything is validated before
/// the first byte is written.
/// </summary>
public static class PvhLoader
{
    /// <summary>Offset of the module list from <see cref="Layout.PvhStartInfo"/>.</summary>
    public const int ModlistOffset = 0x40;
    /// <summary>Offset of the memory map from <see cref="Layout.PvhStartInfo"/>.</summary>
    public const int MemmapOffset = 0x80;
    /// <summary>Bytes reserved for start info, module list and memory map (up to the zero page).</summary>
    public const int AreaSize = 0x1000;
    /// <summary>Most memory map entries that fit in the area.</summary>
    public static int MaxMemmapEntries => (AreaSize - MemmapOffset) / Unsafe.SizeOf<HvmMemmapTableEntry>();

    /// <summary>Validates <paramref name="kernel"/>, writes it and its boot data into <paramref name="memory"/>, and returns how to enter it.</summary>
    /// <exception cref="BootException">The image is invalid, has no PVH entry, or does not fit; nothing has been written.</exception>
    public static BootPlan Load(GuestMemory memory, BootFile kernel, BootOptions options)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(options);
        var image = kernel.Bytes.Span;
        var elf = ElfImage.Parse(image, kernel.Name);
        if (elf.PvhEntry is not { } entry)
            throw new BootException($"{kernel.Name}: vmlinux has no PVH entry note (CONFIG_PVH)");

        // ---- where everything goes ----
        ulong lowBootEnd = Layout.HighMemoryStart.Value;
        ulong imageStart = ulong.MaxValue, imageEnd = 0;
        bool entryLoaded = false;
        foreach (var segment in elf.Segments)
        {
            if (segment.MemorySize == 0) continue;
            if (segment.PhysicalAddress < lowBootEnd)
                throw new BootException($"{kernel.Name}: segment {segment.Index} at 0x{segment.PhysicalAddress:x} overlaps the boot area below 1 MiB");
            if (!GuestRam.Covers(memory, segment.PhysicalAddress, segment.MemorySize))
                throw new BootException($"{kernel.Name}: segment {segment.Index} [0x{segment.PhysicalAddress:x}, 0x{segment.End:x}) is outside guest RAM ({Size.Describe(memory.RamSize)})");
            imageStart = Math.Min(imageStart, segment.PhysicalAddress);
            imageEnd = Math.Max(imageEnd, segment.End);
            entryLoaded |= entry >= segment.PhysicalAddress && entry < segment.PhysicalAddress + segment.FileSize;
        }
        if (imageEnd == 0)
            throw new BootException($"{kernel.Name}: ELF has no non-empty PT_LOAD segment");
        if (!entryLoaded)
            throw new BootException($"{kernel.Name}: PVH entry 0x{entry:x} is not inside a loaded segment");

        byte[] commandLine = CommandLine.Encode(options.CommandLine, Layout.CmdlineMax - 1, kernel.Name);

        ulong initrdAddress = 0, initrdSize = 0;
        if (options.Initrd is { } initrd)
        {
            ulong lowRamEnd = Math.Min(GuestRam.ContiguousEnd(memory, Layout.HighMemoryStart.Value), Layout.MmioHoleStart.Value);
            initrdAddress = InitrdPlacement.Place(initrd, imageEnd, lowRamEnd);
            initrdSize = (ulong)initrd.Length;
        }

        var e820 = E820Map.ForMemory(memory);
        if (e820.Count > MaxMemmapEntries)
            throw new BootException($"memory map has {e820.Count} entries; the PVH start info area holds at most {MaxMemmapEntries}");
        GuestRam.EnsureCovers(memory, Layout.PvhStartInfo.Value, AreaSize, "PVH start info");
        GuestRam.EnsureCovers(memory, Layout.Cmdline.Value, (ulong)commandLine.Length, "kernel command line");

        // ---- write ----
        foreach (var segment in elf.Segments)
        {
            string what = $"{kernel.Name} segment {segment.Index}";
            GuestRam.Write(memory, segment.PhysicalAddress, image.Slice((int)segment.FileOffset, (int)segment.FileSize), what);
            GuestRam.Zero(memory, segment.PhysicalAddress + segment.FileSize, segment.MemorySize - segment.FileSize, what);
        }
        if (options.Initrd is { } rd)
            GuestRam.Write(memory, initrdAddress, rd.Bytes.Span, $"{rd.Name} initrd");
        CommandLine.Write(memory, commandLine);
        WriteStartInfo(memory, initrdAddress, initrdSize, options.Initrd is not null, e820, options.RsdpAddress);

        return new BootPlan(EntryMode.Pvh32, new GuestAddress(entry), Layout.PvhStartInfo)
        {
            ImageStart = new GuestAddress(imageStart),
            ImageEnd = new GuestAddress(imageEnd),
            InitrdStart = new GuestAddress(initrdAddress),
            InitrdSize = initrdSize,
        };
    }

    private static void WriteStartInfo(GuestMemory memory, ulong initrdAddress, ulong initrdSize, bool hasInitrd,
        E820Map e820, GuestAddress? rsdp)
    {
        var start = Layout.PvhStartInfo;
        memory.Fill(start, AreaSize);
        var modlist = start + ModlistOffset;
        var memmap = start + MemmapOffset;

        memory.Write(start, new HvmStartInfo
        {
            Magic = HvmStartInfo.MagicValue,
            Version = HvmStartInfo.CurrentVersion,
            NrModules = hasInitrd ? 1u : 0u,
            ModlistPaddr = hasInitrd ? modlist.Value : 0,
            CmdlinePaddr = Layout.Cmdline.Value,
            RsdpPaddr = rsdp?.Value ?? 0,
            MemmapPaddr = memmap.Value,
            MemmapEntries = (uint)e820.Count,
        });
        if (hasInitrd)
            memory.Write(modlist, new HvmModlistEntry { Paddr = initrdAddress, Size = initrdSize });

        int entrySize = Unsafe.SizeOf<HvmMemmapTableEntry>();
        for (int i = 0; i < e820.Count; i++)
        {
            var entry = e820.Entries[i];
            memory.Write(memmap + (ulong)(i * entrySize),
                new HvmMemmapTableEntry { Addr = entry.Address.Value, Size = entry.Size, Type = (uint)entry.Type });
        }
    }
}
