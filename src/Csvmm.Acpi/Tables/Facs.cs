using System.Buffers.Binary;

namespace Csvmm.Acpi.Tables;

/// <summary>
/// The Firmware ACPI Control Structure (ACPI 6.3 section 5.2.10): 64 bytes, 64-byte aligned, no checksum. csvmm's
/// is empty: no hardware signature, no waking vector (no S3/S4), no global lock owner.
/// </summary>
public static class Facs
{
    /// <summary>Size of the structure.</summary>
    public const int Length = 64;

    /// <summary>Required alignment of its address.</summary>
    public const int Alignment = 64;

    /// <summary>FACS structure version for ACPI 4.0 and later.</summary>
    public const byte Version = 2;

    /// <summary>The 64-byte structure.</summary>
    public static byte[] Build()
    {
        var facs = new byte[Length];
        SdtHeader.Ascii(facs.AsSpan(0, 4), "FACS");
        BinaryPrimitives.WriteUInt32LittleEndian(facs.AsSpan(4), Length);
        // 8: hardware signature, 12: firmware waking vector, 16: global lock, 20: flags, 24: X waking vector: all 0.
        facs[32] = Version;
        return facs;
    }
}
