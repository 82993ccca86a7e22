using System.Security.Cryptography;

namespace Csvmm.TinyGuests.Tests;

/// <summary>
/// A scratch raw image in the temp directory, filled with <see cref="DiskPattern"/> under <see cref="FillSeed"/>, plus the
/// bytes the test expects it to hold (<see cref="Expected"/>), updated with <see cref="ExpectWrite"/> as the guest writes.
/// </summary>
public sealed class ScratchDisk : IDisposable
{
    public const ulong FillSeed = 0xF111_5EED;

    public ScratchDisk(int mib = 16)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"csvmm-scratch-{Environment.ProcessId}-{Guid.NewGuid():N}.img");
        DiskPattern.CreateImage(Path, (long)mib << 20, FillSeed);
        Expected = File.ReadAllBytes(Path);
    }

    public string Path { get; }

    /// <summary>What the file should contain.</summary>
    public byte[] Expected { get; }

    public ulong Sectors => (ulong)Expected.Length / DiskPattern.SectorSize;

    /// <summary>Records that the guest writes the pattern under <paramref name="seed"/> to [lba, +sectors).</summary>
    public void ExpectWrite(ulong lba, int sectors, ulong seed) =>
        DiskPattern.Fill(Expected.AsSpan(checked((int)(lba * DiskPattern.SectorSize)), sectors * DiskPattern.SectorSize), lba * DiskPattern.SectorSize, seed);

    /// <summary>Null when the file equals <see cref="Expected"/>; otherwise where the first difference is.</summary>
    public string? Compare()
    {
        byte[] actual = File.ReadAllBytes(Path);
        if (actual.Length != Expected.Length) return $"file is {actual.Length} bytes, expected {Expected.Length}";
        int at = actual.AsSpan().CommonPrefixLength(Expected);
        return at == actual.Length ? null
            : $"first difference at byte {at} (sector {at / DiskPattern.SectorSize}): 0x{actual[at]:x2}, expected 0x{Expected[at]:x2}";
    }

    public byte[] Hash() => SHA256.HashData(File.ReadAllBytes(Path));

    public void Dispose() => File.Delete(Path);
}
