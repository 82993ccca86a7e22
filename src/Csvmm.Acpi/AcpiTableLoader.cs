using System.Buffers.Binary;
using System.Text;
using Csvmm.Acpi.Tables;
using Csvmm.Memory;

namespace Csvmm.Acpi;

/// <summary>
/// csvmm's ACPI tables as firmware installs them itself: QEMU's "BIOS linker/loader" interface, which SeaBIOS (and
/// OVMF) execute from the fw_cfg file <c>etc/table-loader</c>. The tables are built once at offset 0 of the file
/// <c>etc/acpi/tables</c>, the RSDP is the file <c>etc/acpi/rsdp</c>, and the loader's commands tell the firmware to
/// allocate both (the RSDP in the F segment, where the OS scans for it), add the allocated base to every pointer
/// between tables, and fix the checksums of the tables it changed. The result, wherever firmware puts it, is byte for
/// byte what <see cref="AcpiTables.Build"/> makes at that address: the same tables a directly booted kernel gets.
/// </summary>
public static class AcpiTableLoader
{
    /// <summary>fw_cfg file names, as QEMU names them.</summary>
    public const string RsdpFile = "etc/acpi/rsdp", TablesFile = "etc/acpi/tables", LoaderFile = "etc/table-loader";

    /// <summary>Bytes per loader command, and of a file name field in one (NUL included).</summary>
    public const int CommandLength = 128, FileNameLength = 56;

    /// <summary>Loader commands.</summary>
    public const uint Allocate = 1, AddPointer = 2, AddChecksum = 3;

    /// <summary>Allocation zones: high memory (below 4 GiB) and the F segment (0xF0000-0xFFFFF).</summary>
    public const byte ZoneHigh = 1, ZoneFSeg = 2;

    /// <summary>Alignment of the tables file's allocation: the FACS needs 64 bytes, so offsets keep their alignment.</summary>
    public const uint TablesAlignment = 64;

    /// <summary>Largest table image the loader hands out.</summary>
    public const int MaxTablesSize = 1 << 20;

    /// <summary>The three fw_cfg files for <paramref name="config"/>.</summary>
    /// <exception cref="AcpiException">The configuration is invalid.</exception>
    public static AcpiLoaderFiles Build(AcpiConfig config)
    {
        var image = AcpiTables.Build(new GuestAddress(0), MaxTablesSize, config);
        var t = image.Tables;
        if (t.Rsdp.Value != 0) throw new AcpiException("ACPI layout: the RSDP is not first");

        byte[] rsdp = image.Bytes.Span[..Rsdp.Length].ToArray();
        byte[] tables = image.Bytes.ToArray();
        tables.AsSpan(0, Rsdp.Length).Clear(); // the RSDP lives in its own file; no stray signature in high memory

        int xsdt = (int)t.Xsdt.Value, fadt = (int)t.Fadt.Value;
        int xsdtLength = Xsdt.LengthFor(2);
        var commands = new List<byte[]>
        {
            AllocateCommand(RsdpFile, Rsdp.Alignment, ZoneFSeg),
            AllocateCommand(TablesFile, TablesAlignment, ZoneHigh),
            PointerCommand(RsdpFile, TablesFile, 24, 8),                                   // XsdtAddress
        };
        for (int i = 0; i < 2; i++)
            commands.Add(PointerCommand(TablesFile, TablesFile, (uint)(xsdt + SdtHeader.Size + 8 * i), 8));
        commands.Add(PointerCommand(TablesFile, TablesFile, (uint)(fadt + Fadt.FirmwareCtrl), 4));
        commands.Add(PointerCommand(TablesFile, TablesFile, (uint)(fadt + Fadt.Dsdt), 4));
        commands.Add(PointerCommand(TablesFile, TablesFile, (uint)(fadt + Fadt.XDsdt), 8));
        commands.Add(ChecksumCommand(TablesFile, (uint)(fadt + SdtHeader.ChecksumOffset), (uint)fadt, Fadt.Length));
        commands.Add(ChecksumCommand(TablesFile, (uint)(xsdt + SdtHeader.ChecksumOffset), (uint)xsdt, (uint)xsdtLength));
        commands.Add(ChecksumCommand(RsdpFile, 8, 0, 20));
        commands.Add(ChecksumCommand(RsdpFile, 32, 0, Rsdp.Length));

        var loader = new byte[commands.Count * CommandLength];
        for (int i = 0; i < commands.Count; i++) commands[i].CopyTo(loader, i * CommandLength);
        return new AcpiLoaderFiles(rsdp, tables, loader);
    }

    private static byte[] AllocateCommand(string file, uint alignment, byte zone)
    {
        var c = Command(Allocate);
        Name(c.AsSpan(4), file);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(4 + FileNameLength), alignment);
        c[4 + FileNameLength + 4] = zone;
        return c;
    }

    private static byte[] PointerCommand(string destination, string source, uint offset, byte size)
    {
        var c = Command(AddPointer);
        Name(c.AsSpan(4), destination);
        Name(c.AsSpan(4 + FileNameLength), source);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(4 + 2 * FileNameLength), offset);
        c[4 + 2 * FileNameLength + 4] = size;
        return c;
    }

    private static byte[] ChecksumCommand(string file, uint offset, uint start, uint length)
    {
        var c = Command(AddChecksum);
        Name(c.AsSpan(4), file);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(4 + FileNameLength), offset);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(8 + FileNameLength), start);
        BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(12 + FileNameLength), length);
        return c;
    }

    private static byte[] Command(uint command)
    {
        var c = new byte[CommandLength];
        BinaryPrimitives.WriteUInt32LittleEndian(c, command);
        return c;
    }

    private static void Name(Span<byte> field, string name) => Encoding.ASCII.GetBytes(name, field[..(FileNameLength - 1)]);
}

/// <summary>The fw_cfg files of <see cref="AcpiTableLoader"/>.</summary>
/// <param name="Rsdp">Contents of <c>etc/acpi/rsdp</c>.</param>
/// <param name="Tables">Contents of <c>etc/acpi/tables</c>.</param>
/// <param name="Loader">Contents of <c>etc/table-loader</c>: 128-byte commands.</param>
public sealed record AcpiLoaderFiles(byte[] Rsdp, byte[] Tables, byte[] Loader);
