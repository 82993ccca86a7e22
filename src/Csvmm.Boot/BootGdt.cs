using System.Buffers.Binary;
using Csvmm.Memory;

namespace Csvmm.Boot;

/// <summary>
/// The boot GDT at <see cref="Layout.BootGdt"/> and the empty IDT at <see cref="Layout.BootIdt"/> for the direct
/// entries. Selectors 0x10 and 0x18 are the __BOOT_CS/__BOOT_DS the Linux 64-bit boot protocol names; 0x20 is the
/// flat 32-bit code segment PVH entry needs.
/// </summary>
public static class BootGdt
{
    /// <summary>64-bit code: base 0, limit 4 GiB, type 0xB (execute/read, accessed), P, DPL 0, L.</summary>
    public const ulong Code64Descriptor = 0x00AF_9B00_0000_FFFF;
    /// <summary>Flat data: base 0, limit 4 GiB, type 0x3 (read/write, accessed), P, DPL 0, D/B.</summary>
    public const ulong DataDescriptor = 0x00CF_9300_0000_FFFF;
    /// <summary>Flat 32-bit code: base 0, limit 4 GiB, type 0xB, P, DPL 0, D/B.</summary>
    public const ulong Code32Descriptor = 0x00CF_9B00_0000_FFFF;

    /// <summary>__BOOT_CS: CS for <see cref="EntryMode.Linux64"/>.</summary>
    public const ushort Code64Selector = 0x10;
    /// <summary>__BOOT_DS: DS, ES, FS, GS and SS for both direct entries.</summary>
    public const ushort DataSelector = 0x18;
    /// <summary>CS for <see cref="EntryMode.Pvh32"/>.</summary>
    public const ushort Code32Selector = 0x20;

    /// <summary>Descriptors in the table: two null entries, then the three above.</summary>
    public const int EntryCount = 5;
    /// <summary>GDTR limit.</summary>
    public const ushort GdtLimit = EntryCount * 8 - 1;
    /// <summary>IDTR limit: no vector is valid, so an early exception shuts the guest down rather than run garbage.</summary>
    public const ushort IdtLimit = 0;
    /// <summary>Bytes zeroed at <see cref="Layout.BootIdt"/>.</summary>
    public const int IdtBytes = 16;

    /// <summary>The raw descriptor for <paramref name="selector"/> (0 for the null entries).</summary>
    public static ulong Descriptor(ushort selector) => selector switch
    {
        Code64Selector => Code64Descriptor,
        DataSelector => DataDescriptor,
        Code32Selector => Code32Descriptor,
        0 or 8 => 0,
        _ => throw new ArgumentOutOfRangeException(nameof(selector), $"selector 0x{selector:x} is not in the boot GDT"),
    };

    /// <summary>Writes the GDT and zeroes the IDT bytes.</summary>
    public static void Write(GuestMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        var gdt = memory.GetSpan(Layout.BootGdt, EntryCount * 8);
        for (int i = 0; i < EntryCount; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(gdt[(i * 8)..], Descriptor((ushort)(i * 8)));
        memory.Fill(Layout.BootIdt, IdtBytes);
    }
}

/// <summary>
/// A segment descriptor decoded into the fields of a kvm_segment (the machine copies them across and adds the
/// selector).
/// </summary>
/// <param name="Base">Segment base.</param>
/// <param name="Limit">Byte-granular limit: the 20-bit limit, scaled to (limit &lt;&lt; 12) | 0xFFF when G is set.</param>
/// <param name="Type">4-bit type (e.g. 0xB execute/read accessed, 0x3 read/write accessed).</param>
/// <param name="Present">P.</param>
/// <param name="Dpl">Descriptor privilege level.</param>
/// <param name="Db">D/B: 32-bit default operand size.</param>
/// <param name="S">S: code/data (true) or system descriptor (false).</param>
/// <param name="L">L: 64-bit code.</param>
/// <param name="G">G: limit in 4 KiB units.</param>
/// <param name="Avl">AVL: available to software.</param>
public readonly record struct SegmentDescriptor(uint Base, uint Limit, byte Type, bool Present, byte Dpl, bool Db, bool S, bool L, bool G, bool Avl)
{
    /// <summary>Decodes a raw 8-byte GDT entry.</summary>
    public static SegmentDescriptor Decode(ulong raw)
    {
        uint limit = (uint)(raw & 0xFFFF) | (uint)((raw >> 32) & 0xF_0000);
        uint baseAddress = (uint)((raw >> 16) & 0xFF_FFFF) | (uint)((raw >> 32) & 0xFF00_0000);
        bool g = (raw & (1UL << 55)) != 0;
        return new SegmentDescriptor(
            Base: baseAddress,
            Limit: g ? (limit << 12) | 0xFFF : limit,
            Type: (byte)((raw >> 40) & 0xF),
            Present: (raw & (1UL << 47)) != 0,
            Dpl: (byte)((raw >> 45) & 0x3),
            Db: (raw & (1UL << 54)) != 0,
            S: (raw & (1UL << 44)) != 0,
            L: (raw & (1UL << 53)) != 0,
            G: g,
            Avl: (raw & (1UL << 52)) != 0);
    }
}
