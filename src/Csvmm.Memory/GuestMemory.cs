using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Tmds.Linux;

namespace Csvmm.Memory;

/// <summary>
/// Guest-physical memory: a small set of non-overlapping regions, each an anonymous host mapping.
/// Every access is bounds-checked against a region (including wrap-around); a guest-supplied
/// address or length is never trusted. Regions are added before the VM runs and never removed
/// until <see cref="Dispose"/>.
/// </summary>
public sealed unsafe class GuestMemory : IDisposable
{
    private GuestRegion[] _regions = [];
    private bool _disposed;
    private volatile DirtyPageLog? _dirty;

    /// <summary>
    /// Starts recording the pages the VMM hands out for writing (<see cref="DirtyPageLog"/>): every span this memory
    /// gives (read or write: a span does not say, so reads count too) and every <see cref="MarkWritten"/>. Returns the log.
    /// </summary>
    public DirtyPageLog StartDirtyTracking()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var log = new DirtyPageLog(_regions);
        _dirty = log;
        return log;
    }

    /// <summary>Stops recording (<see cref="StartDirtyTracking"/>).</summary>
    public void StopDirtyTracking() => _dirty = null;

    /// <summary>The log being recorded, or null.</summary>
    public DirtyPageLog? DirtyTracking => _dirty;

    /// <summary>Records that the VMM (a device's DMA through a raw pointer) writes [address, +length), when tracking.</summary>
    public void MarkWritten(GuestAddress address, ulong length)
    {
        if (_dirty is not { } log) return;
        var regions = _regions;
        for (int i = 0; i < regions.Length; i++)
            if (regions[i].Contains(address, length))
            {
                log.Mark(i, address.Value - regions[i].Start.Value, length);
                return;
            }
    }

    /// <summary>Guest RAM and ROM regions, sorted by address.</summary>
    public IReadOnlyList<GuestRegion> Regions => _regions;

    /// <summary>Total bytes of writable RAM (excludes ROM regions).</summary>
    public ulong RamSize
    {
        get
        {
            ulong total = 0;
            foreach (var r in _regions) if (!r.ReadOnly) total += r.Size;
            return total;
        }
    }

    private const int MadvHugepage = 14, MadvDontdump = 16;

    /// <summary>
    /// Maps a new zero-filled region (MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE), asks for transparent huge pages
    /// (MADV_HUGEPAGE, as QEMU does: fewer faults and TLB misses for the guest, and RAM the guest never wrote reads as the
    /// shared huge zero page, which a snapshot or migration scans quickly) and keeps it out of core dumps (MADV_DONTDUMP:
    /// a crashing csvmm must not write the guest's memory to disk). Both are hints: a host without them maps normally.
    /// </summary>
    public GuestRegion AddRegion(GuestAddress start, ulong size, string name, bool readOnly = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (size == 0 || (size & 0xFFF) != 0 || (start.Value & 0xFFF) != 0)
            throw new GuestMemoryException($"region {name} at {start} size 0x{size:x} is not page aligned and non-empty");
        if (start.Value + size < start.Value)
            throw new GuestMemoryException($"region {name} at {start} size 0x{size:x} wraps around");
        foreach (var r in _regions)
            if (start.Value < r.End && r.Start.Value < start.Value + size)
                throw new GuestMemoryException($"region {name} at {start} overlaps {r}");

        void* p = LibC.mmap(null, (size_t)size, LibC.PROT_READ | LibC.PROT_WRITE,
            LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS | LibC.MAP_NORESERVE, -1, 0);
        if (p == LibC.MAP_FAILED)
        {
            int errno = LibC.errno;
            throw new GuestMemoryException($"cannot map {size >> 20} MiB for {name}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        LibC.madvise(p, (size_t)size, MadvHugepage);
        LibC.madvise(p, (size_t)size, MadvDontdump);
        var region = new GuestRegion(start, size, (nint)p, readOnly, name);
        var list = new List<GuestRegion>(_regions) { region };
        list.Sort((a, b) => a.Start.CompareTo(b.Start));
        _regions = list.ToArray();
        return region;
    }

    /// <summary>Finds the region holding [address, address+length) entirely, or null.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public GuestRegion? FindRegion(GuestAddress address, ulong length)
    {
        foreach (var r in _regions)
            if (r.Contains(address, length)) return r;
        return null;
    }

    public bool IsValidRange(GuestAddress address, ulong length) => FindRegion(address, length) is not null;

    /// <summary>
    /// A span over guest memory [address, address+length). Throws <see cref="GuestMemoryException"/> when
    /// any byte is outside a single region. The span is valid until the memory is disposed.
    /// </summary>
    public Span<byte> GetSpan(GuestAddress address, int length)
    {
        if (!TryGetSpan(address, length, out var span))
            GuestMemoryException.ThrowOutOfRange(address, (ulong)Math.Max(length, 0));
        return span;
    }

    /// <summary>
    /// Atomically compares and exchanges 16 bytes of guest RAM (the guest's LOCK CMPXCHG16B when csvmm emulates it):
    /// false when [address, +16) is not inside one writable region or not 16-byte aligned. <paramref name="previous"/>
    /// is what the memory held; the exchange happened when it equals <paramref name="expected"/>.
    /// </summary>
    public bool TryCompareExchange128(GuestAddress address, UInt128 expected, UInt128 desired, out UInt128 previous)
    {
        previous = 0;
        if ((address.Value & 15) != 0) return false;
        GuestRegion? region = FindRegion(address, 16);
        if (region is null || region.ReadOnly) return false;
        MarkWritten(address, 16);
        var target = (UInt128*)((byte*)region.HostAddress + (address.Value - region.Start.Value));
        UInt128 seen = expected;
        HostAtomics.CompareExchange128(target, ref seen, desired);
        previous = seen;
        return true;
    }

    /// <summary>Non-throwing form of <see cref="GetSpan"/> for guest-supplied addresses on hot paths.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGetSpan(GuestAddress address, int length, out Span<byte> span)
    {
        if (length >= 0)
        {
            var regions = _regions;
            for (int i = 0; i < regions.Length; i++)
            {
                var r = regions[i];
                if (r.Contains(address, (ulong)length))
                {
                    if (_dirty is { } log) log.Mark(i, address.Value - r.Start.Value, (ulong)length);
                    span = new Span<byte>((byte*)r.HostAddress + (address.Value - r.Start.Value), length);
                    return true;
                }
            }
        }
        span = default;
        return false;
    }

    public T Read<T>(GuestAddress address) where T : unmanaged =>
        MemoryMarshal.Read<T>(GetSpan(address, sizeof(T)));

    public void Write<T>(GuestAddress address, in T value) where T : unmanaged =>
        MemoryMarshal.Write(GetSpan(address, sizeof(T)), in value);

    public void ReadBytes(GuestAddress address, Span<byte> destination) =>
        GetSpan(address, destination.Length).CopyTo(destination);

    public void WriteBytes(GuestAddress address, ReadOnlySpan<byte> source) =>
        source.CopyTo(GetSpan(address, source.Length));

    /// <summary>Zero-fills [address, address+length).</summary>
    public void Fill(GuestAddress address, int length, byte value = 0) => GetSpan(address, length).Fill(value);

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var r in _regions)
            LibC.munmap((void*)r.HostAddress, (size_t)r.Size);
        _regions = [];
    }
}
