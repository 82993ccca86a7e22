using System.Buffers.Binary;

namespace Csvmm.TinyGuests;

/// <summary>
/// The data the disk guest writes and verifies, as a function of the disk byte address, so the host can produce and
/// check the same bytes: qword(A) = v ^ (v &gt;&gt; 32), v = (A ^ seed) × 0x9E3779B97F4A7C15, for every 8-aligned A.
/// </summary>
public static class DiskPattern
{
    public const int SectorSize = 512;

    /// <summary>The qword at disk byte address <paramref name="address"/> (a multiple of 8).</summary>
    public static ulong Qword(ulong address, ulong seed)
    {
        ulong v = unchecked((address ^ seed) * 0x9E37_79B9_7F4A_7C15);
        return v ^ (v >> 32);
    }

    /// <summary>Fills <paramref name="destination"/> (a multiple of 8 bytes) with the pattern from disk byte address <paramref name="address"/>.</summary>
    public static void Fill(Span<byte> destination, ulong address, ulong seed)
    {
        if (destination.Length % 8 != 0 || address % 8 != 0) throw new ArgumentException("the pattern is made of aligned qwords");
        for (int i = 0; i < destination.Length; i += 8)
            BinaryPrimitives.WriteUInt64LittleEndian(destination[i..], Qword(address + (ulong)i, seed));
    }

    /// <summary>The pattern for <paramref name="sectors"/> sectors from <paramref name="lba"/>.</summary>
    public static byte[] Sectors(ulong lba, int sectors, ulong seed)
    {
        var bytes = new byte[sectors * SectorSize];
        Fill(bytes, lba * SectorSize, seed);
        return bytes;
    }

    /// <summary>Writes the pattern over sectors [<paramref name="lba"/>, +<paramref name="sectors"/>) of the file at <paramref name="path"/>.</summary>
    public static void WriteToFile(string path, ulong lba, int sectors, ulong seed)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Write);
        file.Position = (long)(lba * SectorSize);
        file.Write(Sectors(lba, sectors, seed));
    }

    /// <summary>Creates (or replaces) a file of <paramref name="bytes"/> bytes filled with the pattern under <paramref name="seed"/>.</summary>
    public static void CreateImage(string path, long bytes, ulong seed)
    {
        if (bytes % SectorSize != 0) throw new ArgumentException("an image is a whole number of sectors", nameof(bytes));
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write);
        var chunk = new byte[1 << 20];
        for (long at = 0; at < bytes; at += chunk.Length)
        {
            int n = (int)Math.Min(chunk.Length, bytes - at);
            Fill(chunk.AsSpan(0, n), (ulong)at, seed);
            file.Write(chunk, 0, n);
        }
    }
}
