using Csvmm.Memory;

namespace Csvmm.Boot;

/// <summary>E820 address range types (the same numbers are used by the PVH memory map).</summary>
public enum E820Type : uint
{
    /// <summary>Usable RAM.</summary>
    Ram = 1,
    /// <summary>Reserved: the OS must not use it.</summary>
    Reserved = 2,
    /// <summary>ACPI tables, reclaimable after they are read.</summary>
    Acpi = 3,
    /// <summary>ACPI non-volatile storage.</summary>
    Nvs = 4,
    /// <summary>RAM with errors.</summary>
    Unusable = 5,
}

/// <summary>One range of the E820 memory map.</summary>
/// <param name="Address">First byte of the range.</param>
/// <param name="Size">Length in bytes (never zero; the range never wraps).</param>
/// <param name="Type">What the range holds.</param>
public readonly record struct E820Entry(GuestAddress Address, ulong Size, E820Type Type)
{
    /// <summary>Last byte + 1 (the map only holds ranges that end at or below 2^64 - 1).</summary>
    public ulong End => Address.Value + Size;

    /// <inheritdoc/>
    public override string ToString() => $"[{Address}, 0x{End:x}) {Type}";
}

/// <summary>
/// The guest's E820 memory map: sorted, non-overlapping ranges; adjacent ranges of the same type are merged.
/// <see cref="ForMemory"/> builds the platform's map from the guest's RAM regions; <see cref="Add"/> builds any map.
/// </summary>
public sealed class E820Map
{
    private readonly List<E820Entry> _entries = [];

    /// <summary>The ranges, sorted by address.</summary>
    public IReadOnlyList<E820Entry> Entries => _entries;

    /// <summary>Number of ranges.</summary>
    public int Count => _entries.Count;

    /// <summary>
    /// Adds [address, address+size) with <paramref name="type"/>. Throws when the range is empty, wraps around or
    /// overlaps a range already in the map.
    /// </summary>
    public void Add(GuestAddress address, ulong size, E820Type type)
    {
        if (size == 0)
            throw new BootException($"E820: empty {type} range at {address}");
        if (!address.TryAdd(size, out var end))
            throw new BootException($"E820: {type} range at {address} size 0x{size:x} wraps around");

        int index = LowerBound(address.Value);
        if (index > 0 && _entries[index - 1].End > address.Value)
            throw new BootException($"E820: {type} range [{address}, {end}) overlaps {_entries[index - 1]}");
        if (index < _entries.Count && _entries[index].Address.Value < end.Value)
            throw new BootException($"E820: {type} range [{address}, {end}) overlaps {_entries[index]}");

        var entry = new E820Entry(address, size, type);
        if (index > 0 && _entries[index - 1].Type == type && _entries[index - 1].End == address.Value)
        {
            index--;
            entry = new E820Entry(_entries[index].Address, _entries[index].Size + size, type);
            _entries.RemoveAt(index);
        }
        if (index < _entries.Count && _entries[index].Type == type && _entries[index].Address.Value == entry.End)
        {
            entry = entry with { Size = entry.Size + _entries[index].Size };
            _entries.RemoveAt(index);
        }
        _entries.Insert(index, entry);
    }

    /// <summary>Total bytes of <see cref="E820Type.Ram"/> ranges.</summary>
    public ulong RamBytes => _entries.Where(e => e.Type == E820Type.Ram).Aggregate(0UL, (sum, e) => sum + e.Size);

    /// <summary>
    /// The platform's map for the RAM regions of <paramref name="memory"/> (read-only regions become reserved
    /// ranges); see <see cref="ForRam"/>.
    /// </summary>
    public static E820Map ForMemory(GuestMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        var ram = new List<(GuestAddress, ulong)>();
        var rom = new List<(GuestAddress, ulong)>();
        foreach (var region in memory.Regions)
            (region.ReadOnly ? rom : ram).Add((region.Start, region.Size));
        return ForRam(ram, rom);
    }

    /// <summary>
    /// The platform's map: RAM below <see cref="Layout.EbdaStart"/>, [EbdaStart, 1 MiB) reserved (EBDA, VGA hole,
    /// option ROMs, BIOS), RAM from 1 MiB up, the KVM identity-map/TSS pages reserved as QEMU does, and any ROM
    /// ranges above 1 MiB reserved. RAM inside the 32-bit MMIO hole [<see cref="Layout.MmioHoleStart"/>, 4 GiB) is
    /// refused: the machine must split its RAM around the hole.
    /// </summary>
    /// <param name="ram">The guest's RAM ranges (any order; they must not overlap).</param>
    /// <param name="rom">Read-only ranges (e.g. the firmware ROM below 4 GiB), or null.</param>
    public static E820Map ForRam(IEnumerable<(GuestAddress Start, ulong Size)> ram, IEnumerable<(GuestAddress Start, ulong Size)>? rom = null)
    {
        ArgumentNullException.ThrowIfNull(ram);
        var map = new E820Map();
        ulong ebda = Layout.EbdaStart.Value, highStart = Layout.HighMemoryStart.Value;
        ulong holeStart = Layout.MmioHoleStart.Value, holeEnd = Layout.FourGiB.Value;

        foreach (var (start, size) in ram)
        {
            if (size == 0) continue;
            if (!start.TryAdd(size, out var endAddress))
                throw new BootException($"RAM range at {start} size 0x{size:x} wraps around");
            ulong s = start.Value, e = endAddress.Value;
            if (s < holeEnd && e > holeStart)
                throw new BootException($"RAM range [{start}, 0x{e:x}) overlaps the 32-bit MMIO hole [0x{holeStart:x}, 0x{holeEnd:x})");
            if (s < ebda)
                map.Add(start, Math.Min(e, ebda) - s, E820Type.Ram);
            if (e > highStart)
            {
                ulong from = Math.Max(s, highStart);
                map.Add(new GuestAddress(from), e - from, E820Type.Ram);
            }
        }

        map.Add(Layout.EbdaStart, highStart - ebda, E820Type.Reserved);
        // KVM_SET_IDENTITY_MAP_ADDR's page and KVM_SET_TSS_ADDR's three pages: the guest must not use them.
        map.Add(Layout.IdentityMap, Layout.TssAddress.Value - Layout.IdentityMap.Value + 3 * Size.Page, E820Type.Reserved);

        foreach (var (start, size) in rom ?? [])
        {
            if (size == 0) continue;
            if (!start.TryAdd(size, out var endAddress))
                throw new BootException($"ROM range at {start} size 0x{size:x} wraps around");
            if (endAddress.Value <= highStart) continue; // inside the reserved legacy area already
            ulong from = Math.Max(start.Value, highStart);
            map.Add(new GuestAddress(from), endAddress.Value - from, E820Type.Reserved);
        }
        return map;
    }

    /// <summary>First index whose entry starts at or above <paramref name="address"/>.</summary>
    private int LowerBound(ulong address)
    {
        int lo = 0, hi = _entries.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_entries[mid].Address.Value < address) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    /// <inheritdoc/>
    public override string ToString() => string.Join(", ", _entries);
}
