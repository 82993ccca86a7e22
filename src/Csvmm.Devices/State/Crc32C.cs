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

    private const uint ReflectedPolynomial = 0x82F6_3B78;

    /// <summary>
    /// The running value after <paramref name="count"/> zero bytes, in O(log count) instead of reading them: appending
    /// zeros is a linear map of the 32-bit register, raised to the count's power by squaring (the method of zlib's
    /// crc32_combine). A snapshot's hole (pages that were all zero and never written) is checked without touching it.
    /// </summary>
    public static uint AppendZeros(uint running, long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count == 0) return running;
        return Times(ZerosOperator(count), running);
    }

    /// <summary>
    /// The 32×32 bit matrix (one uint per column) that appends <paramref name="count"/> zero bytes to a running value
    /// (<see cref="ApplyZeros"/>): worth keeping when the same run length recurs, as a snapshot's zero chunks do.
    /// </summary>
    public static uint[] ZerosOperator(long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var result = new uint[32];
        for (int i = 0; i < 32; i++) result[i] = 1u << i; // identity
        if (count == 0) return result;
        Span<uint> odd = stackalloc uint[32], even = stackalloc uint[32];
        odd[0] = ReflectedPolynomial; // the operator for one zero bit
        uint row = 1;
        for (int n = 1; n < 32; n++, row <<= 1) odd[n] = row;
        Square(even, odd); // two zero bits
        Square(odd, even); // four zero bits
        // Each round squares once more (the first gives one zero byte) and applies it where count has a one bit
        // (the powers commute, so composing them into one matrix is the same as applying them in turn).
        Span<uint> next = stackalloc uint[32];
        while (true)
        {
            Square(even, odd);
            if ((count & 1) != 0) Compose(result, even, next);
            count >>= 1;
            if (count == 0) break;
            Square(odd, even);
            if ((count & 1) != 0) Compose(result, odd, next);
            count >>= 1;
            if (count == 0) break;
        }
        return result;
    }

    /// <summary><paramref name="running"/> after the zero bytes <paramref name="zerosOperator"/> stands for.</summary>
    public static uint ApplyZeros(ReadOnlySpan<uint> zerosOperator, uint running) => Times(zerosOperator, running);

    /// <summary>result := step ∘ result.</summary>
    private static void Compose(Span<uint> result, ReadOnlySpan<uint> step, Span<uint> scratch)
    {
        for (int i = 0; i < 32; i++) scratch[i] = Times(step, result[i]);
        scratch.CopyTo(result);
    }

    private static uint Times(ReadOnlySpan<uint> matrix, uint vector)
    {
        uint sum = 0;
        for (int i = 0; vector != 0; i++, vector >>= 1)
            if ((vector & 1) != 0) sum ^= matrix[i];
        return sum;
    }

    private static void Square(Span<uint> square, ReadOnlySpan<uint> matrix)
    {
        for (int n = 0; n < 32; n++) square[n] = Times(matrix, matrix[n]);
    }
}
