namespace Csvmm.Acpi;

/// <summary>The ACPI 8-bit checksum: a table is valid when all of its bytes, checksum included, sum to 0 modulo 256.</summary>
public static class AcpiChecksum
{
    /// <summary>The sum of <paramref name="bytes"/> modulo 256.</summary>
    public static byte Sum(ReadOnlySpan<byte> bytes)
    {
        byte sum = 0;
        foreach (byte b in bytes) sum = unchecked((byte)(sum + b));
        return sum;
    }

    /// <summary>
    /// Stores at <paramref name="checksumOffset"/> the byte that makes <paramref name="bytes"/> sum to 0
    /// (whatever the checksum byte held before).
    /// </summary>
    public static void Fix(Span<byte> bytes, int checksumOffset)
    {
        bytes[checksumOffset] = 0;
        bytes[checksumOffset] = unchecked((byte)(0 - Sum(bytes)));
    }
}
