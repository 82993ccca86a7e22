using System.Buffers.Binary;

namespace Csvmm.Boot;

/// <summary>One PT_LOAD program header of an ELF image, validated against the file.</summary>
/// <param name="Index">Program header index (for messages).</param>
/// <param name="FileOffset">p_offset; [FileOffset, FileOffset + FileSize) is inside the file.</param>
/// <param name="PhysicalAddress">p_paddr: where the segment is loaded.</param>
/// <param name="FileSize">p_filesz: bytes copied from the file.</param>
/// <param name="MemorySize">p_memsz (&gt;= FileSize): bytes occupied in memory, the rest zeroed; PhysicalAddress + MemorySize does not wrap.</param>
public readonly record struct ElfSegment(int Index, ulong FileOffset, ulong PhysicalAddress, ulong FileSize, ulong MemorySize)
{
    /// <summary>Last byte + 1 in guest memory.</summary>
    public ulong End => PhysicalAddress + MemorySize;
}

/// <summary>
/// A validated little-endian x86-64 ELF64 executable: its loadable segments and, if it has one, the PVH entry point
/// from a Xen ELF note of type XEN_ELFNOTE_PHYS32_ENTRY. Every offset and size read from the file is checked
/// against the file length without overflow before it is used.
/// </summary>
public sealed class ElfImage
{
    /// <summary>Xen ELF note type carrying the 32-bit physical PVH entry point.</summary>
    public const uint XenElfNotePhys32Entry = 18;

    private const int EhdrSize = 64, PhdrSize = 56, NhdrSize = 12;
    private const byte ElfClass64 = 2, ElfData2Lsb = 1, EvCurrent = 1;
    private const ushort EtExec = 2, EmX86_64 = 62, PnXnum = 0xFFFF;
    private const uint PtLoad = 1, PtNote = 4;

    private ElfImage(ulong entry, IReadOnlyList<ElfSegment> segments, uint? pvhEntry)
    {
        Entry = entry;
        Segments = segments;
        PvhEntry = pvhEntry;
    }

    /// <summary>e_entry (a virtual address for vmlinux; not used for PVH).</summary>
    public ulong Entry { get; }

    /// <summary>The PT_LOAD segments in program-header order.</summary>
    public IReadOnlyList<ElfSegment> Segments { get; }

    /// <summary>The PVH 32-bit entry point, or null when the image has no XEN_ELFNOTE_PHYS32_ENTRY note.</summary>
    public uint? PvhEntry { get; }

    /// <summary>True when <paramref name="image"/> starts with the ELF magic "\x7fELF".</summary>
    public static bool HasElfMagic(ReadOnlySpan<byte> image) =>
        image.Length >= 4 && image[0] == 0x7F && image[1] == (byte)'E' && image[2] == (byte)'L' && image[3] == (byte)'F';

    /// <summary>Parses and validates <paramref name="image"/>; <paramref name="name"/> is used in messages.</summary>
    /// <exception cref="BootException">Not an x86-64 ELF64 executable, or a header points outside the file.</exception>
    public static ElfImage Parse(ReadOnlySpan<byte> image, string name)
    {
        if (!HasElfMagic(image))
            throw new BootException($"{name}: not an ELF file (no \\x7fELF magic)");
        if (image.Length < EhdrSize)
            throw new BootException($"{name}: truncated ELF: {image.Length} bytes is shorter than the 64-byte ELF64 header");
        if (image[4] != ElfClass64)
            throw new BootException($"{name}: not a 64-bit ELF (EI_CLASS is {image[4]})");
        if (image[5] != ElfData2Lsb)
            throw new BootException($"{name}: not a little-endian ELF (EI_DATA is {image[5]})");
        if (image[6] != EvCurrent)
            throw new BootException($"{name}: unsupported ELF version {image[6]}");

        ushort type = BinaryPrimitives.ReadUInt16LittleEndian(image[16..]);
        ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(image[18..]);
        ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(image[24..]);
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(image[32..]);
        ushort phentsize = BinaryPrimitives.ReadUInt16LittleEndian(image[54..]);
        ushort phnum = BinaryPrimitives.ReadUInt16LittleEndian(image[56..]);
        if (machine != EmX86_64)
            throw new BootException($"{name}: not an x86-64 ELF (e_machine is {machine})");
        if (type != EtExec)
            throw new BootException($"{name}: not an executable ELF (e_type is {type}, expected ET_EXEC)");
        if (phentsize != PhdrSize)
            throw new BootException($"{name}: corrupt ELF: e_phentsize is {phentsize}, expected {PhdrSize}");
        if (phnum == 0 || phnum == PnXnum)
            throw new BootException($"{name}: ELF has {(phnum == 0 ? "no program headers" : "an extended program header count (PN_XNUM)")}");
        ulong tableSize = (ulong)phnum * PhdrSize;
        if (!FitsInFile(image, phoff, tableSize))
            throw new BootException($"{name}: truncated ELF: {phnum} program headers at offset 0x{phoff:x} extend past the end of the file ({image.Length} bytes)");

        var segments = new List<ElfSegment>();
        uint? pvhEntry = null;
        for (int i = 0; i < phnum; i++)
        {
            var phdr = image.Slice((int)phoff + i * PhdrSize, PhdrSize);
            uint pType = BinaryPrimitives.ReadUInt32LittleEndian(phdr);
            ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(phdr[8..]);
            ulong paddr = BinaryPrimitives.ReadUInt64LittleEndian(phdr[24..]);
            ulong filesz = BinaryPrimitives.ReadUInt64LittleEndian(phdr[32..]);
            ulong memsz = BinaryPrimitives.ReadUInt64LittleEndian(phdr[40..]);
            if (pType != PtLoad && pType != PtNote) continue;

            if (!FitsInFile(image, offset, filesz))
                throw new BootException($"{name}: corrupt ELF: segment {i} (offset 0x{offset:x}, size 0x{filesz:x}) extends past the end of the file ({image.Length} bytes)");
            if (pType == PtNote)
            {
                pvhEntry ??= FindPvhEntry(image.Slice((int)offset, (int)filesz), name, i);
                continue;
            }
            if (filesz > memsz)
                throw new BootException($"{name}: corrupt ELF: segment {i} has p_filesz 0x{filesz:x} larger than p_memsz 0x{memsz:x}");
            if (memsz > ulong.MaxValue - paddr)
                throw new BootException($"{name}: corrupt ELF: segment {i} at 0x{paddr:x} size 0x{memsz:x} wraps around");
            segments.Add(new ElfSegment(i, offset, paddr, filesz, memsz));
        }
        if (segments.Count == 0)
            throw new BootException($"{name}: ELF has no PT_LOAD segment");
        return new ElfImage(entry, segments, pvhEntry);
    }

    /// <summary>True when [offset, offset + length) lies inside the file (no overflow possible).</summary>
    private static bool FitsInFile(ReadOnlySpan<byte> image, ulong offset, ulong length) =>
        offset <= (ulong)image.Length && length <= (ulong)image.Length - offset;

    /// <summary>
    /// Walks the notes of one PT_NOTE segment (each: namesz, descsz, type, then name and desc each padded to
    /// 4 bytes) and returns the entry of a "Xen" XEN_ELFNOTE_PHYS32_ENTRY note, or null.
    /// </summary>
    private static uint? FindPvhEntry(ReadOnlySpan<byte> notes, string name, int segment)
    {
        while (notes.Length >= NhdrSize)
        {
            uint nameSize = BinaryPrimitives.ReadUInt32LittleEndian(notes);
            uint descSize = BinaryPrimitives.ReadUInt32LittleEndian(notes[4..]);
            uint noteType = BinaryPrimitives.ReadUInt32LittleEndian(notes[8..]);
            ulong nameSpace = ((ulong)nameSize + 3) & ~3UL; // from u32: cannot overflow
            ulong descSpace = ((ulong)descSize + 3) & ~3UL;
            ulong rest = (ulong)(notes.Length - NhdrSize);
            if (nameSpace > rest || descSize > rest - nameSpace)
                throw new BootException($"{name}: corrupt ELF: a note in segment {segment} (namesz {nameSize}, descsz {descSize}) extends past the segment");

            var noteName = notes.Slice(NhdrSize, (int)nameSize);
            var desc = notes.Slice(NhdrSize + (int)nameSpace, (int)descSize);
            if (noteType == XenElfNotePhys32Entry && noteName.SequenceEqual("Xen\0"u8))
                return ReadPvhEntry(desc, name);

            ulong next = NhdrSize + nameSpace + descSpace;
            if (next >= (ulong)notes.Length) break; // the last note may omit its trailing padding
            notes = notes[(int)next..];
        }
        return null;
    }

    private static uint ReadPvhEntry(ReadOnlySpan<byte> desc, string name)
    {
        // Linux emits the entry with _ASM_PTR: 8 bytes on x86-64, 4 on i386.
        ulong value = desc.Length switch
        {
            4 => BinaryPrimitives.ReadUInt32LittleEndian(desc),
            8 => BinaryPrimitives.ReadUInt64LittleEndian(desc),
            _ => throw new BootException($"{name}: corrupt PVH entry note: descriptor is {desc.Length} bytes, expected 4 or 8"),
        };
        if (value > uint.MaxValue)
            throw new BootException($"{name}: corrupt PVH entry note: entry 0x{value:x} is above 4 GiB");
        return (uint)value;
    }
}
