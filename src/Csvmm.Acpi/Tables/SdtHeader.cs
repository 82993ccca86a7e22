using System.Buffers.Binary;
using System.Text;

namespace Csvmm.Acpi.Tables;

/// <summary>
/// The 36-byte System Description Table header (ACPI 6.0 section 5.2.6) shared by every table except the RSDP and
/// FACS: signature, length, revision, checksum, OEM ID, OEM table ID, OEM revision, creator ID, creator revision.
/// </summary>
public static class SdtHeader
{
    /// <summary>Size of the header in bytes.</summary>
    public const int Size = 36;

    /// <summary>Offset of the Length field (u32).</summary>
    public const int LengthOffset = 4;
    /// <summary>Offset of the Revision field (u8).</summary>
    public const int RevisionOffset = 8;
    /// <summary>Offset of the Checksum field (u8).</summary>
    public const int ChecksumOffset = 9;

    /// <summary>
    /// A zeroed table of <paramref name="length"/> bytes whose header is filled in (checksum still 0): fill in the
    /// body, then call <see cref="Seal"/>.
    /// </summary>
    public static byte[] Create(string signature, byte revision, int length)
    {
        if (signature.Length != 4)
            throw new AcpiException($"ACPI table signature '{signature}' is not 4 characters");
        if (length < Size)
            throw new AcpiException($"ACPI table {signature} of {length} bytes is shorter than its {Size}-byte header");
        var table = new byte[length];
        var span = table.AsSpan();
        Ascii(span[..4], signature);
        BinaryPrimitives.WriteUInt32LittleEndian(span[LengthOffset..], (uint)length);
        span[RevisionOffset] = revision;
        Ascii(span.Slice(10, 6), AcpiIds.OemId);
        Ascii(span.Slice(16, 8), AcpiIds.OemTableId);
        BinaryPrimitives.WriteUInt32LittleEndian(span[24..], AcpiIds.OemRevision);
        Ascii(span.Slice(28, 4), AcpiIds.CreatorId);
        BinaryPrimitives.WriteUInt32LittleEndian(span[32..], AcpiIds.CreatorRevision);
        return table;
    }

    /// <summary>A table whose body is <paramref name="body"/>, sealed (length and checksum set).</summary>
    public static byte[] Wrap(string signature, byte revision, ReadOnlySpan<byte> body)
    {
        int length = checked(Size + body.Length);
        var table = Create(signature, revision, length);
        body.CopyTo(table.AsSpan(Size));
        Seal(table);
        return table;
    }

    /// <summary>Sets the checksum so that the table's bytes sum to 0. Call after the last change to the table.</summary>
    public static void Seal(Span<byte> table)
    {
        if (BinaryPrimitives.ReadUInt32LittleEndian(table[LengthOffset..]) != (uint)table.Length)
            throw new AcpiException($"ACPI table {Encoding.ASCII.GetString(table[..4])} length field does not match its {table.Length} bytes");
        AcpiChecksum.Fix(table, ChecksumOffset);
    }

    /// <summary>Writes exactly <paramref name="destination"/>.Length ASCII characters of <paramref name="text"/>.</summary>
    internal static void Ascii(Span<byte> destination, string text)
    {
        if (text.Length != destination.Length || !IsPrintableAscii(text))
            throw new AcpiException($"ACPI identifier '{text}' is not {destination.Length} printable ASCII characters");
        for (int i = 0; i < text.Length; i++) destination[i] = (byte)text[i];
    }

    private static bool IsPrintableAscii(string text)
    {
        foreach (char c in text)
            if (c < 0x20 || c > 0x7E) return false;
        return true;
    }
}
