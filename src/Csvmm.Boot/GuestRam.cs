using Csvmm.Memory;

namespace Csvmm.Boot;

/// <summary>
/// Checks and copies over guest RAM that may span several adjacent regions. Read-only (ROM) regions do not count
/// as RAM. Every failure is a <see cref="BootException"/> naming what was being placed.
/// </summary>
internal static class GuestRam
{
    /// <summary>Largest span handed to <see cref="GuestMemory.GetSpan"/> in one piece.</summary>
    private const ulong MaxChunk = 1UL << 30;

    /// <summary>End of the run of contiguous writable RAM that contains <paramref name="address"/>, or 0 when it is not RAM.</summary>
    public static ulong ContiguousEnd(GuestMemory memory, ulong address)
    {
        ulong end = 0;
        ulong cursor = address;
        foreach (var region in memory.Regions) // sorted by address
        {
            if (region.ReadOnly || region.End <= cursor) continue;
            if (region.Start.Value > cursor) break;
            end = region.End;
            cursor = region.End;
        }
        return end;
    }

    /// <summary>True when [address, address+length) is writable RAM (possibly across adjacent regions).</summary>
    public static bool Covers(GuestMemory memory, ulong address, ulong length)
    {
        if (length == 0) return true;
        if (length > ulong.MaxValue - address) return false;
        ulong end = ContiguousEnd(memory, address);
        return end != 0 && address + length <= end;
    }

    /// <summary>Throws unless [address, address+length) is writable RAM.</summary>
    public static void EnsureCovers(GuestMemory memory, ulong address, ulong length, string what)
    {
        if (!Covers(memory, address, length))
            throw new BootException($"{what} [0x{address:x}, +0x{length:x}) is not inside guest RAM");
    }

    /// <summary>Copies <paramref name="data"/> to guest RAM at <paramref name="address"/>.</summary>
    public static void Write(GuestMemory memory, ulong address, ReadOnlySpan<byte> data, string what)
    {
        EnsureCovers(memory, address, (ulong)data.Length, what);
        while (!data.IsEmpty)
        {
            var span = NextChunk(memory, address, (ulong)data.Length);
            data[..span.Length].CopyTo(span);
            data = data[span.Length..];
            address += (ulong)span.Length;
        }
    }

    /// <summary>Zero-fills [address, address+length) of guest RAM.</summary>
    public static void Zero(GuestMemory memory, ulong address, ulong length, string what)
    {
        EnsureCovers(memory, address, length, what);
        while (length != 0)
        {
            var span = NextChunk(memory, address, length);
            span.Clear();
            length -= (ulong)span.Length;
            address += (ulong)span.Length;
        }
    }

    private static Span<byte> NextChunk(GuestMemory memory, ulong address, ulong remaining)
    {
        var region = memory.FindRegion(new GuestAddress(address), 1)!; // EnsureCovers proved it exists
        ulong chunk = Math.Min(Math.Min(remaining, region.End - address), MaxChunk);
        return memory.GetSpan(new GuestAddress(address), (int)chunk);
    }
}
