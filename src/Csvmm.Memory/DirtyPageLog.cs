namespace Csvmm.Memory;

/// <summary>
/// The guest pages the VMM itself wrote while a migration tracks RAM: device DMA (disk reads into guest buffers,
/// used-ring updates) and csvmm's instruction emulator. KVM's dirty log records only the guest's own writes, so a
/// live migration needs both. One bit per 4 KiB page per region (regions in <see cref="GuestMemory.Regions"/> order),
/// set with an atomic OR from any thread.
/// <para>
/// A page is marked when the VMM takes a pointer to it, before it writes (a disk read completes later, on another
/// thread), so a mark can never be consumed by a pre-copy pass that then misses the write. The marks are therefore
/// cumulative: never cleared while the log lives, and a migration sends every marked page again once the vCPUs are
/// stopped and the devices quiesced (no write can be in flight then).
/// </para>
/// </summary>
public sealed class DirtyPageLog
{
    public const int PageShift = 12;
    private readonly ulong[][] _bits;

    internal DirtyPageLog(IReadOnlyList<GuestRegion> regions)
    {
        _bits = new ulong[regions.Count][];
        for (int i = 0; i < regions.Count; i++) _bits[i] = new ulong[WordsFor(regions[i].Size)];
    }

    /// <summary>64-bit words of a bitmap with one bit per page of <paramref name="regionSize"/> bytes.</summary>
    public static int WordsFor(ulong regionSize) => checked((int)((((regionSize + 4095) >> PageShift) + 63) / 64));

    /// <summary>Marks the pages of [<paramref name="offset"/>, +<paramref name="length"/>) inside region <paramref name="region"/> (already bounds-checked by the caller).</summary>
    internal void Mark(int region, ulong offset, ulong length)
    {
        if (length == 0) return;
        ulong[] bits = _bits[region];
        ulong first = offset >> PageShift, last = (offset + length - 1) >> PageShift;
        for (ulong page = first; page <= last; page++)
        {
            ref ulong word = ref bits[page >> 6];
            ulong bit = 1UL << (int)(page & 63);
            if ((Volatile.Read(ref word) & bit) == 0) Interlocked.Or(ref word, bit);
        }
    }

    /// <summary>ORs region <paramref name="region"/>'s marks (every page marked since the log started) into <paramref name="into"/>.</summary>
    public void OrInto(int region, Span<ulong> into)
    {
        ulong[] bits = _bits[region];
        if (into.Length < bits.Length) throw new ArgumentException($"the bitmap has {into.Length} words, region {region} needs {bits.Length}");
        for (int i = 0; i < bits.Length; i++) into[i] |= Volatile.Read(ref bits[i]);
    }

    /// <summary>Pages marked in region <paramref name="region"/>.</summary>
    public long MarkedPages(int region)
    {
        ulong[] bits = _bits[region];
        long n = 0;
        for (int i = 0; i < bits.Length; i++) n += System.Numerics.BitOperations.PopCount(Volatile.Read(ref bits[i]));
        return n;
    }
}
