using System.Buffers.Binary;
using System.Numerics;

namespace Csvmm.Devices.State;

/// <summary>
/// CRC-32C (Castagnoli, as iSCSI and ext4 use it) on the CPU's CRC32 instruction, whole or incrementally:
/// <c>Finish(Append(Append(Start, a), b)) == Compute(a + b)</c>. Device state records and snapshot files use it.
/// </summary>
public static class Crc32C
{
    /// <summary>The running value before any byte.</summary>
    public const uint Start = 0xFFFF_FFFF;

    /// <summary>The CRC of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => Finish(Append(Start, data));

    /// <summary>The running value after <paramref name="data"/> follows what <paramref name="running"/> covers.</summary>
    public static uint Append(uint running, ReadOnlySpan<byte> data)
    {
        while (data.Length >= 8)
        {
            running = BitOperations.Crc32C(running, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        foreach (byte b in data) running = BitOperations.Crc32C(running, b);
        return running;
    }

    /// <summary>The CRC from a running value.</summary>
    public static uint Finish(uint running) => ~running;
}
