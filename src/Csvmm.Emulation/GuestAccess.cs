using System.Buffers.Binary;

namespace Csvmm.Emulation;

/// <summary>Guest physical memory as the emulator needs it: RAM reads and writes, and a 16-byte atomic compare-exchange.</summary>
public interface IGuestPhysicalMemory
{
    /// <summary>Reads RAM; false when any byte is not RAM (MMIO, a hole): the emulator then gives up on the instruction.</summary>
    bool TryRead(ulong address, Span<byte> destination);

    /// <summary>Writes RAM (not ROM); false when any byte is not writable RAM.</summary>
    bool TryWrite(ulong address, ReadOnlySpan<byte> source);

    /// <summary>
    /// Atomically, against every other CPU and device: when the 16 bytes at <paramref name="address"/> (16-aligned) equal
    /// <paramref name="expected"/>, stores <paramref name="desired"/>. <paramref name="previous"/> is what was there. False when not RAM.
    /// </summary>
    bool TryCompareExchange128(ulong address, UInt128 expected, UInt128 desired, out UInt128 previous);
}

/// <summary>An exception the instruction raises, to be injected into the guest (the instruction does not complete).</summary>
/// <param name="Vector">#GP = 13, #SS = 12, #PF = 14, #UD = 6, #NP = 11, #AC = 17...</param>
/// <param name="ErrorCode">The error code pushed, for the vectors that have one.</param>
/// <param name="FaultAddress">CR2 for a #PF.</param>
public readonly record struct GuestFault(byte Vector, uint? ErrorCode = null, ulong? FaultAddress = null)
{
    public const byte DE = 0, DB = 1, BP = 3, OF = 4, UD = 6, NM = 7, TS = 10, NP = 11, SS = 12, GP = 13, PF = 14, AC = 17;

    public static GuestFault Gp(uint errorCode = 0) => new(GP, errorCode);
    public static GuestFault Ss(uint errorCode = 0) => new(SS, errorCode);
    public static GuestFault Ud => new(UD);
}

/// <summary>How an access uses memory.</summary>
public enum AccessKind { Read, Write, Fetch }

/// <summary>Which segment register an access goes through.</summary>
public enum SegmentName { Es, Cs, Ss, Ds, Fs, Gs }

/// <summary>
/// Memory as the instruction being emulated sees it: segmentation (limits, types, canonical addresses), then paging
/// (32-bit, PAE, 4-level) with the access checks the processor makes (present, writable with CR0.WP, user/supervisor,
/// NX, SMEP, SMAP with RFLAGS.AC), setting accessed and dirty bits as it walks. Faults come back as
/// <see cref="GuestFault"/>s carrying the error code and CR2 a real processor would report; an address that is not
/// RAM comes back as <see cref="NotRam"/>, and the emulator gives the instruction up.
/// </summary>
public sealed class GuestAccess
{
    private const ulong PtePresent = 1, PteWrite = 2, PteUser = 4, PteAccessed = 0x20, PteDirty = 0x40, PteLarge = 0x80;
    private const ulong PteNx = 1UL << 63;
    private const ulong Address52 = 0x000F_FFFF_FFFF_F000;

    private readonly CpuState _cpu;
    private readonly IGuestPhysicalMemory _memory;

    public GuestAccess(CpuState cpu, IGuestPhysicalMemory memory)
    {
        _cpu = cpu;
        _memory = memory;
    }

    /// <summary>Whether this view is of <paramref name="cpu"/> over <paramref name="memory"/> (the emulator keeps one per vCPU).</summary>
    internal bool IsFor(CpuState cpu, IGuestPhysicalMemory memory) => ReferenceEquals(_cpu, cpu) && ReferenceEquals(_memory, memory);

    /// <summary>The fault that stands for "this is not RAM": not a guest exception, the emulator stops.</summary>
    public static readonly GuestFault NotRam = new(0xFF);

    /// <summary>The physical memory underneath (for the atomic operations, after translation).</summary>
    public IGuestPhysicalMemory Physical => _memory;

    private ref Segment SegmentOf(SegmentName s)
    {
        switch (s)
        {
            case SegmentName.Es: return ref _cpu.Es;
            case SegmentName.Cs: return ref _cpu.Cs;
            case SegmentName.Ss: return ref _cpu.Ss;
            case SegmentName.Ds: return ref _cpu.Ds;
            case SegmentName.Fs: return ref _cpu.Fs;
            default: return ref _cpu.Gs;
        }
    }

    /// <summary>The linear address of <paramref name="offset"/> in segment <paramref name="segment"/>, after the segment checks.</summary>
    public GuestFault? ToLinear(SegmentName segment, ulong offset, int size, AccessKind kind, out ulong linear)
    {
        ref Segment s = ref SegmentOf(segment);
        GuestFault limitFault = segment == SegmentName.Ss ? GuestFault.Ss() : GuestFault.Gp();
        CpuMode mode = _cpu.Mode;
        if (mode == CpuMode.Long64)
        {
            linear = (segment is SegmentName.Fs or SegmentName.Gs ? s.Base : 0) + offset;
            ulong last = linear + (ulong)(size - 1);
            return IsCanonical(linear) && IsCanonical(last) ? null : limitFault;
        }
        if (mode is CpuMode.Real or CpuMode.Virtual8086)
        {
            linear = (s.Base + (offset & 0xFFFF)) & 0xFFFF_FFFF;
            return offset + (ulong)size - 1 > 0xFFFF ? limitFault : null;
        }
        linear = 0;
        if (s.Unusable || !s.Present) return limitFault;
        bool code = (s.Type & 0x8) != 0;
        if (kind == AccessKind.Write && (code || (s.Type & 0x2) == 0)) return limitFault; // code, or read-only data
        if (kind == AccessKind.Read && code && (s.Type & 0x2) == 0) return limitFault;   // execute-only code
        ulong end = offset + (ulong)size - 1;
        if (!code && (s.Type & 0x4) != 0)
        {
            // Expand-down: valid offsets are (limit, 0xFFFF or 0xFFFFFFFF].
            ulong upper = s.Db ? 0xFFFF_FFFF : 0xFFFF;
            if (offset <= s.Limit || end > upper) return limitFault;
        }
        else if (end > s.Limit || end < offset)
        {
            return limitFault;
        }
        linear = (s.Base + offset) & 0xFFFF_FFFF;
        return null;
    }

    private static bool IsCanonical(ulong address) => (ulong)((long)(address << 16) >> 16) == address;

    /// <summary>Reads through a segment.</summary>
    public GuestFault? Read(SegmentName segment, ulong offset, Span<byte> destination)
    {
        if (ToLinear(segment, offset, destination.Length, AccessKind.Read, out ulong linear) is { } f) return f;
        return ReadLinear(linear, destination, AccessKind.Read, supervisor: false);
    }

    /// <summary>Writes through a segment.</summary>
    public GuestFault? Write(SegmentName segment, ulong offset, ReadOnlySpan<byte> source)
    {
        if (ToLinear(segment, offset, source.Length, AccessKind.Write, out ulong linear) is { } f) return f;
        return WriteLinear(linear, source, supervisor: false);
    }

    /// <summary>Reads at a linear address; <paramref name="supervisor"/>: an implicit supervisor access (GDT, IDT, TSS) whatever the CPL.</summary>
    public GuestFault? ReadLinear(ulong linear, Span<byte> destination, AccessKind kind, bool supervisor)
    {
        while (!destination.IsEmpty)
        {
            int chunk = (int)Math.Min((ulong)destination.Length, 0x1000 - (linear & 0xFFF));
            if (Translate(linear, kind, supervisor, out ulong physical) is { } f) return f;
            if (!_memory.TryRead(physical, destination[..chunk])) return NotRam;
            destination = destination[chunk..];
            linear += (ulong)chunk;
        }
        return null;
    }

    /// <summary>Writes at a linear address. Every page is translated (and checked) before any byte is written.</summary>
    public GuestFault? WriteLinear(ulong linear, ReadOnlySpan<byte> source, bool supervisor)
    {
        // A write that crosses into a page that faults must not have changed the first page.
        Span<ulong> physical = stackalloc ulong[2];
        int pages = 0;
        for (ulong a = linear & ~0xFFFUL, end = linear + (ulong)source.Length - 1; pages < 2; a += 0x1000)
        {
            if (Translate(Math.Max(a, linear), AccessKind.Write, supervisor, out physical[pages]) is { } f) return f;
            pages++;
            if ((end & ~0xFFFUL) == a) break;
        }
        ulong first = (ulong)Math.Min(source.Length, (int)(0x1000 - (linear & 0xFFF)));
        if (!_memory.TryWrite(physical[0], source[..(int)first])) return NotRam;
        if ((ulong)source.Length > first && !_memory.TryWrite(physical[1], source[(int)first..])) return NotRam;
        return null;
    }

    /// <summary>
    /// Linear → physical through the paging mode CR0.PG, CR4.PAE and EFER.LMA select, with the processor's checks.
    /// </summary>
    public GuestFault? Translate(ulong linear, AccessKind kind, bool supervisor, out ulong physical)
    {
        physical = linear;
        if ((_cpu.Cr0 & ControlBits.Cr0Pg) == 0)
        {
            physical = linear & 0xFFFF_FFFF;
            return null;
        }
        bool user = !supervisor && _cpu.Cpl == 3;
        bool write = kind == AccessKind.Write;
        bool fetch = kind == AccessKind.Fetch;
        bool nxe = (_cpu.Efer & ControlBits.EferNxe) != 0;
        bool allWritable = true, allUser = true, anyNx = false;
        uint errorBase = (write ? 2u : 0) | (user ? 4u : 0) | (fetch && (nxe || (_cpu.Cr4 & ControlBits.Cr4Smep) != 0) ? 16u : 0);

        Span<byte> entryBytes = stackalloc byte[8];
        ulong table, entry = 0, pageSize;
        int level;
        bool pae = (_cpu.Cr4 & ControlBits.Cr4Pae) != 0;
        bool longMode = (_cpu.Efer & ControlBits.EferLma) != 0;
        if (!pae)
        {
            // 32-bit paging: 10 + 10 + 12, 4 MiB pages with CR4.PSE.
            table = _cpu.Cr3 & 0xFFFF_F000;
            for (level = 2; ; level--)
            {
                int index = (int)((linear >> (level == 2 ? 22 : 12)) & 0x3FF);
                ulong at = table + (ulong)index * 4;
                if (!_memory.TryRead(at, entryBytes[..4])) return NotRam;
                entry = BinaryPrimitives.ReadUInt32LittleEndian(entryBytes);
                if ((entry & PtePresent) == 0) return PageFault(linear, errorBase);
                allWritable &= (entry & PteWrite) != 0;
                allUser &= (entry & PteUser) != 0;
                if (SetBits(at, ref entry, PteAccessed, 4) is { } nr) return nr;
                if (level == 2 && (entry & PteLarge) != 0 && (_cpu.Cr4 & ControlBits.Cr4Pse) != 0)
                {
                    pageSize = 4UL << 20;
                    ulong frame = (entry & 0xFFC0_0000) | ((entry >> 13) & 0xFF) << 32; // PSE-36 bits 39:32
                    return Finish(linear, at, ref entry, frame, pageSize, 4, write, user, supervisor, fetch, allWritable, allUser, anyNx, errorBase, out physical);
                }
                if (level == 1)
                    return Finish(linear, at, ref entry, entry & 0xFFFF_F000, 4096, 4, write, user, supervisor, fetch, allWritable, allUser, anyNx, errorBase, out physical);
                table = entry & 0xFFFF_F000;
            }
        }

        int top;
        if (longMode)
        {
            if ((_cpu.Cr4 & (1UL << 12)) != 0) return NotRam; // LA57: 5-level paging is not emulated
            table = _cpu.Cr3 & Address52;
            top = 4;
        }
        else
        {
            // PAE: the four PDPTEs at CR3 (a processor caches them at the CR3 load; they are read again here).
            ulong at = (_cpu.Cr3 & 0xFFFF_FFE0) + ((linear >> 30) & 3) * 8;
            if (!_memory.TryRead(at, entryBytes)) return NotRam;
            entry = BinaryPrimitives.ReadUInt64LittleEndian(entryBytes);
            if ((entry & PtePresent) == 0) return PageFault(linear, errorBase);
            table = entry & Address52;
            top = 2;
        }
        for (level = top; ; level--)
        {
            int shift = 12 + 9 * (level - 1);
            ulong at = table + ((linear >> shift) & 0x1FF) * 8;
            if (!_memory.TryRead(at, entryBytes)) return NotRam;
            entry = BinaryPrimitives.ReadUInt64LittleEndian(entryBytes);
            if ((entry & PtePresent) == 0) return PageFault(linear, errorBase);
            if (!nxe && (entry & PteNx) != 0) return PageFault(linear, errorBase | 1 | 8); // reserved bit set
            allWritable &= (entry & PteWrite) != 0;
            allUser &= (entry & PteUser) != 0;
            anyNx |= (entry & PteNx) != 0;
            if (SetBits(at, ref entry, PteAccessed, 8) is { } nr) return nr;
            bool large = level is 2 or 3 && (entry & PteLarge) != 0;
            if (large || level == 1)
            {
                pageSize = 1UL << shift;
                ulong frame = entry & Address52 & ~(pageSize - 1);
                return Finish(linear, at, ref entry, frame, pageSize, 8, write, user, supervisor, fetch, allWritable, allUser, anyNx, errorBase, out physical);
            }
            table = entry & Address52;
        }
    }

    private GuestFault? Finish(ulong linear, ulong entryAddress, ref ulong entry, ulong frame, ulong pageSize, int entrySize,
        bool write, bool user, bool implicitSupervisor, bool fetch, bool allWritable, bool allUser, bool anyNx, uint errorBase, out ulong physical)
    {
        physical = 0;
        uint protection = errorBase | 1;
        if (user && !allUser) return PageFault(linear, protection);
        if (write && !allWritable && (user || (_cpu.Cr0 & ControlBits.Cr0Wp) != 0)) return PageFault(linear, protection);
        if (fetch && anyNx) return PageFault(linear, protection);
        if (!user && allUser)
        {
            if (fetch && (_cpu.Cr4 & ControlBits.Cr4Smep) != 0) return PageFault(linear, protection);
            // SMAP: an explicit supervisor access may reach a user page only with RFLAGS.AC set; an implicit one never.
            if (!fetch && (_cpu.Cr4 & ControlBits.Cr4Smap) != 0 && (implicitSupervisor || (_cpu.Rflags & Flags.AC) == 0))
                return PageFault(linear, protection);
        }
        if (write && SetBits(entryAddress, ref entry, PteDirty, entrySize) is { } nr) return nr;
        physical = frame | (linear & (pageSize - 1));
        return null;
    }

    private GuestFault? SetBits(ulong address, ref ulong entry, ulong bits, int size)
    {
        if ((entry & bits) == bits) return null;
        entry |= bits;
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, entry);
        return _memory.TryWrite(address, b[..size]) ? null : NotRam;
    }

    private GuestFault PageFault(ulong linear, uint errorCode)
    {
        return new GuestFault(GuestFault.PF, errorCode, linear);
    }
}
