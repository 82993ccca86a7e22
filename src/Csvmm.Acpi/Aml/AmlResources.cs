namespace Csvmm.Acpi.Aml;

/// <summary>One resource descriptor of a ResourceTemplate (ACPI 6.0 section 6.4).</summary>
public interface IAmlResource
{
    /// <summary>Appends the descriptor's bytes (tag, length, fields) to <paramref name="writer"/>.</summary>
    void WriteTo(AmlWriter writer);
}

/// <summary>
/// ASL ResourceTemplate() { descriptors }: a buffer holding the descriptors followed by an End Tag whose checksum
/// byte makes the whole descriptor list sum to 0 (ACPI 6.0 section 6.4.2.9).
/// </summary>
public sealed class AmlResourceTemplate : IAmlObject
{
    private const byte EndTag = 0x79; // small item 0x0F, length 1

    private readonly IAmlResource[] _descriptors;

    /// <summary>A template holding <paramref name="descriptors"/> in order.</summary>
    public AmlResourceTemplate(params IEnumerable<IAmlResource> descriptors) => _descriptors = descriptors.ToArray();

    /// <summary>The descriptor bytes, End Tag and checksum included (the buffer's contents).</summary>
    public byte[] ToBytes()
    {
        var w = new AmlWriter();
        foreach (var d in _descriptors) d.WriteTo(w);
        w.WriteByte(EndTag);
        w.WriteByte(0);
        var bytes = w.ToArray();
        AcpiChecksum.Fix(bytes, bytes.Length - 1);
        return bytes;
    }

    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer) => new AmlBuffer(ToBytes()).WriteTo(writer);
}

/// <summary>
/// ASL IO(Decode16, min, max, alignment, length): an I/O port descriptor (small item 0x08, ACPI 6.0 section 6.4.2.5).
/// </summary>
public sealed record IoDescriptor(ushort Minimum, ushort Maximum, byte Alignment, byte Length) : IAmlResource
{
    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer)
    {
        writer.WriteByte(0x47);  // small item 0x08, 7 bytes
        writer.WriteByte(0x01);  // Decode16: the device decodes all 16 address bits
        writer.WriteWord(Minimum);
        writer.WriteWord(Maximum);
        writer.WriteByte(Alignment);
        writer.WriteByte(Length);
    }
}

/// <summary>
/// ASL IRQNoFlags() { irqs }: an IRQ descriptor without the flags byte, meaning edge-triggered, active high,
/// exclusive (small item 0x04, ACPI 6.0 section 6.4.2.1).
/// </summary>
public sealed record IrqNoFlagsDescriptor : IAmlResource
{
    /// <summary>A descriptor for ISA IRQs <paramref name="irqs"/> (each 0-15).</summary>
    public IrqNoFlagsDescriptor(params ReadOnlySpan<int> irqs)
    {
        foreach (int irq in irqs)
        {
            if (irq is < 0 or > 15)
                throw new AcpiException($"IRQ descriptor: IRQ {irq} is not an ISA IRQ (0-15)");
            Mask |= (ushort)(1 << irq);
        }
    }

    /// <summary>Bit n set = IRQ n.</summary>
    public ushort Mask { get; }

    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer)
    {
        writer.WriteByte(0x22);  // small item 0x04, 2 bytes
        writer.WriteWord(Mask);
    }
}

/// <summary>Memory caching attribute of a <see cref="DWordMemoryDescriptor"/> (_MEM).</summary>
public enum MemoryCaching : byte
{
    /// <summary>Non-cacheable (MMIO registers).</summary>
    NonCacheable = 0,
    /// <summary>Cacheable.</summary>
    Cacheable = 1,
    /// <summary>Write-combining.</summary>
    WriteCombining = 2,
    /// <summary>Prefetchable.</summary>
    Prefetchable = 3,
}

/// <summary>
/// Helpers shared by the Word/DWord address space descriptors (large items 0x88/0x87, ACPI 6.0 sections 6.4.3.5.2-3).
/// Every csvmm address space descriptor is ResourceProducer, PosDecode, MinFixed, MaxFixed, with granularity 0 and
/// translation offset 0.
/// </summary>
internal static class AddressSpaceDescriptor
{
    public const byte MemoryRange = 0;
    public const byte IoRange = 1;
    public const byte BusNumberRange = 2;

    /// <summary>General flags: bit 3 _MAF (max fixed), bit 2 _MIF (min fixed), bit 1 _DEC = 0 (positive), bit 0 = 0 (producer).</summary>
    public const byte ProducerFixedPositive = 0x0C;

    public static void WriteWord(AmlWriter writer, byte resourceType, byte typeFlags, ushort minimum, ushort maximum, string what)
    {
        if (minimum > maximum)
            throw new AcpiException($"{what} [0x{minimum:x}, 0x{maximum:x}] ends before it starts");
        int length = maximum - minimum + 1;
        if (length > ushort.MaxValue)
            throw new AcpiException($"{what} [0x{minimum:x}, 0x{maximum:x}] is longer than a word descriptor can say");
        writer.WriteByte(0x88);   // large item 0x08: Word Address Space Descriptor
        writer.WriteWord(13);     // bytes after the length field
        writer.WriteByte(resourceType);
        writer.WriteByte(ProducerFixedPositive);
        writer.WriteByte(typeFlags);
        writer.WriteWord(0);      // _GRA
        writer.WriteWord(minimum);
        writer.WriteWord(maximum);
        writer.WriteWord(0);      // _TRA
        writer.WriteWord((ushort)length);
    }

    public static void WriteDWord(AmlWriter writer, byte resourceType, byte typeFlags, uint minimum, uint maximum, string what)
    {
        if (minimum > maximum)
            throw new AcpiException($"{what} [0x{minimum:x}, 0x{maximum:x}] ends before it starts");
        ulong length = (ulong)maximum - minimum + 1;
        if (length > uint.MaxValue)
            throw new AcpiException($"{what} [0x{minimum:x}, 0x{maximum:x}] is longer than a dword descriptor can say");
        writer.WriteByte(0x87);   // large item 0x07: DWord Address Space Descriptor
        writer.WriteWord(23);     // bytes after the length field
        writer.WriteByte(resourceType);
        writer.WriteByte(ProducerFixedPositive);
        writer.WriteByte(typeFlags);
        writer.WriteDWord(0);     // _GRA
        writer.WriteDWord(minimum);
        writer.WriteDWord(maximum);
        writer.WriteDWord(0);     // _TRA
        writer.WriteDWord((uint)length);
    }
}

/// <summary>
/// ASL WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, max - min + 1): the bus
/// numbers a root bridge decodes.
/// </summary>
public sealed record WordBusNumberDescriptor(ushort Minimum, ushort Maximum) : IAmlResource
{
    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer) =>
        AddressSpaceDescriptor.WriteWord(writer, AddressSpaceDescriptor.BusNumberRange, 0, Minimum, Maximum, "bus number range");
}

/// <summary>
/// ASL WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, max - min + 1): an I/O
/// window a root bridge forwards.
/// </summary>
public sealed record WordIoDescriptor(ushort Minimum, ushort Maximum) : IAmlResource
{
    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer) =>
        AddressSpaceDescriptor.WriteWord(writer, AddressSpaceDescriptor.IoRange, 0x03 /* _RNG: EntireRange */, Minimum, Maximum, "I/O window");
}

/// <summary>
/// ASL DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, caching, ReadWrite|ReadOnly, 0, min, max, 0,
/// max - min + 1): a 32-bit memory window a root bridge forwards.
/// </summary>
public sealed record DWordMemoryDescriptor(uint Minimum, uint Maximum, MemoryCaching Caching = MemoryCaching.NonCacheable, bool ReadWrite = true)
    : IAmlResource
{
    /// <inheritdoc/>
    public void WriteTo(AmlWriter writer)
    {
        // Type-specific flags: bit 0 _RW, bits 1-2 _MEM, bits 3-4 _MTP = AddressRangeMemory, bit 5 _TTP = TypeStatic.
        byte flags = (byte)(((byte)Caching << 1) | (ReadWrite ? 1 : 0));
        AddressSpaceDescriptor.WriteDWord(writer, AddressSpaceDescriptor.MemoryRange, flags, Minimum, Maximum, "memory window");
    }
}
