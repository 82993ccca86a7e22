using Csvmm.Acpi.Tables;
using Csvmm.Memory;

namespace Csvmm.Acpi;

/// <summary>
/// Builds csvmm's ACPI tables and lays them out in one block of guest memory: RSDP first (at the block's start,
/// 16-byte aligned, where Linux's scan of 0xE0000-0xFFFFF finds it), then the FACS (64-byte aligned), DSDT, FADT,
/// MADT and XSDT (8-byte aligned), with every pointer fixed up to the final addresses.
/// </summary>
public static class AcpiTables
{
    private const int TableAlignment = 8;

    /// <summary>
    /// Builds the tables for <paramref name="config"/> and writes them to <paramref name="memory"/> at
    /// <paramref name="start"/>. Throws <see cref="AcpiException"/> when the configuration is invalid, the start is
    /// not 16-byte aligned, the tables need more than <paramref name="maxSize"/> bytes, or the block is not inside
    /// guest memory; nothing is written then.
    /// </summary>
    public static AcpiImage Write(GuestMemory memory, GuestAddress start, int maxSize, AcpiConfig config)
    {
        var image = Build(start, maxSize, config);
        if (!memory.IsValidRange(start, (ulong)image.Size))
            throw new AcpiException($"ACPI tables [{start}, +0x{image.Size:x}) are not inside guest memory");
        memory.WriteBytes(start, image.Bytes.Span);
        return image;
    }

    /// <summary>
    /// Builds the tables for <paramref name="config"/> as they must sit at <paramref name="start"/>, without writing
    /// them anywhere (for firmware interfaces and tests). Throws like <see cref="Write"/>.
    /// </summary>
    public static AcpiImage Build(GuestAddress start, int maxSize, AcpiConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        if (start.Value % Rsdp.Alignment != 0)
            throw new AcpiException($"ACPI tables start at {start}, which is not {Rsdp.Alignment}-byte aligned");
        if (maxSize <= 0)
            throw new AcpiException($"ACPI table space of {maxSize} bytes is empty");

        byte[] facs = Facs.Build();
        byte[] dsdt = Dsdt.Build(config);
        byte[] madt = Madt.Build(config);

        // Place everything first: the FADT, XSDT and RSDP only need the addresses of what they point at.
        var placer = new Placer(start);
        var rsdpAt = placer.Place(Rsdp.Length, Rsdp.Alignment);
        var facsAt = placer.Place(facs.Length, Facs.Alignment);
        var dsdtAt = placer.Place(dsdt.Length, TableAlignment);
        var fadtAt = placer.Place(Fadt.Length, TableAlignment);
        var madtAt = placer.Place(madt.Length, TableAlignment);
        var xsdtAt = placer.Place(Xsdt.LengthFor(2), TableAlignment);
        ulong size = placer.Offset;
        if (size > (ulong)maxSize)
            throw new AcpiException($"ACPI tables need {size} bytes but only {maxSize} are reserved at {start}");

        byte[] fadt = Fadt.Build(config, facsAt, dsdtAt);
        byte[] xsdt = Xsdt.Build([fadtAt, madtAt]);
        byte[] rsdp = Rsdp.Build(xsdtAt);

        var bytes = new byte[size];
        void Put(GuestAddress at, byte[] table) => table.CopyTo(bytes, (int)at.OffsetFrom(start));
        Put(rsdpAt, rsdp);
        Put(facsAt, facs);
        Put(dsdtAt, dsdt);
        Put(fadtAt, fadt);
        Put(madtAt, madt);
        Put(xsdtAt, xsdt);
        return new AcpiImage(start, bytes, new AcpiTableAddresses(rsdpAt, xsdtAt, fadtAt, facsAt, dsdtAt, madtAt));
    }

    /// <summary>Hands out aligned, consecutive ranges from a start address.</summary>
    private sealed class Placer(GuestAddress start)
    {
        /// <summary>Bytes used so far, alignment padding included.</summary>
        public ulong Offset { get; private set; }

        /// <summary>The aligned address of the next <paramref name="length"/> bytes.</summary>
        public GuestAddress Place(int length, int alignment)
        {
            ulong mask = (ulong)alignment - 1;
            try
            {
                ulong at = checked(start.Value + Offset + mask) & ~mask;
                Offset = checked(at + (ulong)length) - start.Value;
                return new GuestAddress(at);
            }
            catch (OverflowException e)
            {
                throw new AcpiException($"ACPI tables at {start} run past the end of the address space", e);
            }
        }
    }
}

/// <summary>Where each table sits in guest memory.</summary>
/// <param name="Rsdp">The RSDP: what the OS is told about (boot_params.acpi_rsdp_addr, PVH rsdp_paddr) or finds by scanning.</param>
/// <param name="Xsdt">The XSDT.</param>
/// <param name="Fadt">The FADT ("FACP").</param>
/// <param name="Facs">The FACS.</param>
/// <param name="Dsdt">The DSDT.</param>
/// <param name="Madt">The MADT ("APIC").</param>
public readonly record struct AcpiTableAddresses(
    GuestAddress Rsdp, GuestAddress Xsdt, GuestAddress Fadt, GuestAddress Facs, GuestAddress Dsdt, GuestAddress Madt);

/// <summary>The laid-out tables: one block of bytes that belongs at <see cref="Start"/>.</summary>
public sealed class AcpiImage
{
    internal AcpiImage(GuestAddress start, byte[] bytes, AcpiTableAddresses tables)
    {
        Start = start;
        Bytes = bytes;
        Tables = tables;
    }

    /// <summary>Guest address of the block's first byte (the RSDP).</summary>
    public GuestAddress Start { get; }

    /// <summary>The block (tables and the zero padding between them).</summary>
    public ReadOnlyMemory<byte> Bytes { get; }

    /// <summary>Total size of the block in bytes.</summary>
    public int Size => Bytes.Length;

    /// <summary>Address of the RSDP.</summary>
    public GuestAddress Rsdp => Tables.Rsdp;

    /// <summary>Address of every table.</summary>
    public AcpiTableAddresses Tables { get; }
}
