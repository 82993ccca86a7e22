using System.Buffers.Binary;
using Csvmm.Memory;

namespace Csvmm.Acpi.Tables;

/// <summary>The Extended System Description Table (ACPI 6.3 section 5.2.8), revision 1: 64-bit pointers to the other tables.</summary>
public static class Xsdt
{
    /// <summary>Table revision.</summary>
    public const byte Revision = 1;

    /// <summary>Length of an XSDT with <paramref name="entries"/> pointers.</summary>
    public static int LengthFor(int entries) => checked(SdtHeader.Size + 8 * entries);

    /// <summary>The XSDT pointing at <paramref name="tables"/> (the FADT first, by convention).</summary>
    public static byte[] Build(ReadOnlySpan<GuestAddress> tables)
    {
        var t = SdtHeader.Create("XSDT", Revision, LengthFor(tables.Length));
        for (int i = 0; i < tables.Length; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(t.AsSpan(SdtHeader.Size + 8 * i), tables[i].Value);
        SdtHeader.Seal(t);
        return t;
    }
}
