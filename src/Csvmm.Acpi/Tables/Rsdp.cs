using System.Buffers.Binary;
using Csvmm.Memory;

namespace Csvmm.Acpi.Tables;

/// <summary>
/// The Root System Description Pointer (ACPI 6.3 section 5.2.5), revision 2: 36 bytes, 16-byte aligned, with the
/// ACPI 1.0 checksum over its first 20 bytes and the extended checksum over all 36. It points at the XSDT only
/// (RSDT address 0): every OS that reads revision 2 uses the XSDT.
/// </summary>
public static class Rsdp
{
    /// <summary>Size of the structure.</summary>
    public const int Length = 36;

    /// <summary>Required alignment of its address (the OS scans 16-byte boundaries).</summary>
    public const int Alignment = 16;

    /// <summary>Revision for ACPI 2.0 and later.</summary>
    public const byte Revision = 2;

    /// <summary>The RSDP pointing at the XSDT at <paramref name="xsdt"/>.</summary>
    public static byte[] Build(GuestAddress xsdt)
    {
        var r = new byte[Length];
        var s = r.AsSpan();
        SdtHeader.Ascii(s[..8], "RSD PTR ");
        SdtHeader.Ascii(s.Slice(9, 6), AcpiIds.OemId);
        s[15] = Revision;
        // 16: RsdtAddress = 0
        BinaryPrimitives.WriteUInt32LittleEndian(s[20..], Length);
        BinaryPrimitives.WriteUInt64LittleEndian(s[24..], xsdt.Value);
        AcpiChecksum.Fix(s[..20], 8);
        AcpiChecksum.Fix(s, 32);
        return r;
    }
}
