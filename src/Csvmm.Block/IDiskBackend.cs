using System.Runtime.InteropServices;
using Csvmm.Memory;

namespace Csvmm.Block;

/// <summary>
/// A guest disk's storage: the small operation table the block devices (virtio-blk, IDE) sit on, so other image
/// formats can follow without touching them (kvmtool's disk_image_operations, Cloud Hypervisor's DiskFile).
/// </summary>
/// <remarks>
/// <para>Offsets and lengths are in bytes. Any range inside <c>[0, SizeBytes)</c> is accepted; devices pass
/// sector multiples (<see cref="DiskBackendExtensions.ReadSectors"/>). A range that leaves the disk, or whose
/// offset + length wraps, fails with <see cref="DiskIoStatus.OutOfRange"/> before any host access.</para>
/// <para>Buffers are spans straight into guest RAM: the backend reads into and writes from them directly.
/// A request is all-or-nothing from the device's point of view: short transfers are continued, EINTR is
/// retried, and a failure is reported as a <see cref="DiskIoResult"/> — no request method throws, so nothing
/// escapes into a vCPU or I/O thread.</para>
/// <para>Requests may come from several threads at once (each IDE channel on its vCPU thread, virtio-blk
/// on its I/O thread); overlapping concurrent writes have no defined order, as on real hardware.</para>
/// </remarks>
public interface IDiskBackend : IDisposable
{
    /// <summary>The disk's capacity, fixed when it was opened; a multiple of <see cref="LogicalBlockSize"/>.</summary>
    ulong SizeBytes { get; }

    /// <summary>True when the disk refuses writes, discards and write-zeroes (<see cref="DiskIoStatus.ReadOnly"/>).</summary>
    bool ReadOnly { get; }

    /// <summary>The sector size the guest sees: 512.</summary>
    int LogicalBlockSize { get; }

    /// <summary>One line for logs and errors: path, format, size, mode.</summary>
    string Describe { get; }

    /// <summary>This disk's request counters.</summary>
    DiskCounters Counters { get; }

    /// <summary>Fills all of <paramref name="destination"/> from the disk at <paramref name="offset"/>.</summary>
    DiskIoResult Read(ulong offset, Span<byte> destination);

    /// <summary>Writes all of <paramref name="source"/> to the disk at <paramref name="offset"/>.</summary>
    DiskIoResult Write(ulong offset, ReadOnlySpan<byte> source);

    /// <summary>
    /// Fills the buffers one after the other from consecutive disk bytes starting at <paramref name="offset"/>
    /// (preadv): a scatter read of one guest request. The whole range is checked before any host access.
    /// This default issues one <see cref="Read"/> per buffer; backends override it with a single system call.
    /// </summary>
    DiskIoResult ReadVectored(ulong offset, ReadOnlySpan<IoVector> buffers)
    {
        if (!IoVector.TryTotal(buffers, out ulong total) || offset > SizeBytes || total > SizeBytes - offset)
            return DiskIoResult.OutOfRange;
        foreach (var b in buffers)
        {
            DiskIoResult r = Read(offset, b.AsSpan());
            if (!r.IsOk) return r;
            offset += b.Length;
        }
        return DiskIoResult.Ok;
    }

    /// <summary>
    /// Writes the buffers one after the other to consecutive disk bytes starting at <paramref name="offset"/>
    /// (pwritev): a gather write of one guest request. The whole range is checked before any host access.
    /// This default issues one <see cref="Write"/> per buffer; backends override it with a single system call.
    /// </summary>
    DiskIoResult WriteVectored(ulong offset, ReadOnlySpan<IoVector> buffers)
    {
        if (ReadOnly) return DiskIoResult.ReadOnlyDisk;
        if (!IoVector.TryTotal(buffers, out ulong total) || offset > SizeBytes || total > SizeBytes - offset)
            return DiskIoResult.OutOfRange;
        foreach (var b in buffers)
        {
            DiskIoResult r = Write(offset, b.AsSpan());
            if (!r.IsOk) return r;
            offset += b.Length;
        }
        return DiskIoResult.Ok;
    }

    /// <summary>Makes every completed write durable (fdatasync): a guest FLUSH / FLUSH CACHE.</summary>
    DiskIoResult Flush();

    /// <summary>
    /// Tells the host the range is no longer needed (a hint: a backend that cannot deallocate succeeds
    /// without doing anything). What the range reads back afterwards is unspecified.
    /// </summary>
    DiskIoResult Discard(ulong offset, ulong length);

    /// <summary>
    /// Makes the range read back as zeroes. With <paramref name="unmap"/> the backend may deallocate it
    /// (virtio-blk WRITE_ZEROES with the UNMAP flag); otherwise it stays allocated.
    /// </summary>
    DiskIoResult WriteZeroes(ulong offset, ulong length, bool unmap);
}

/// <summary>Sector-addressed helpers for devices: the sector-to-byte conversion is checked.</summary>
public static class DiskBackendExtensions
{
    /// <summary>The capacity in <see cref="IDiskBackend.LogicalBlockSize"/> sectors.</summary>
    public static ulong SectorCount(this IDiskBackend disk) => disk.SizeBytes / (ulong)disk.LogicalBlockSize;

    /// <summary>Reads <paramref name="destination"/> starting at <paramref name="sector"/>; a sector number whose byte offset overflows is out of range.</summary>
    public static DiskIoResult ReadSectors(this IDiskBackend disk, ulong sector, Span<byte> destination) =>
        TrySectorOffset(sector, disk.LogicalBlockSize, out ulong offset) ? disk.Read(offset, destination) : DiskIoResult.OutOfRange;

    /// <summary>Writes <paramref name="source"/> starting at <paramref name="sector"/>; a sector number whose byte offset overflows is out of range.</summary>
    public static DiskIoResult WriteSectors(this IDiskBackend disk, ulong sector, ReadOnlySpan<byte> source) =>
        TrySectorOffset(sector, disk.LogicalBlockSize, out ulong offset) ? disk.Write(offset, source) : DiskIoResult.OutOfRange;

    /// <summary><paramref name="sector"/> × <paramref name="blockSize"/>, or false when it overflows 64 bits.</summary>
    public static bool TrySectorOffset(ulong sector, int blockSize, out ulong offset)
    {
        if (blockSize <= 0 || sector > ulong.MaxValue / (ulong)blockSize)
        {
            offset = 0;
            return false;
        }
        offset = sector * (ulong)blockSize;
        return true;
    }
}

/// <summary>
/// One buffer of a vectored request, laid out exactly as <c>struct iovec</c> (base pointer, size_t length) so an
/// array of them goes to preadv/pwritev and io_submit as is. Outside the block layer a vector can be made only
/// from guest memory (<see cref="TryFromGuest"/>: inside one region, and not a read-only one when the disk writes
/// into it), never from an arbitrary span: the kernel keeps the address beyond any span's lifetime (AIO completes
/// later), so it must point at memory that neither moves nor goes away while the VM runs. Lengths are at most
/// <see cref="int.MaxValue"/>.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public readonly unsafe struct IoVector
{
    private readonly byte* _base;
    private readonly nuint _length;

    /// <summary>A buffer of <paramref name="length"/> bytes at <paramref name="address"/>: the block layer's own native allocations (bounce buffers) and tests.</summary>
    internal IoVector(byte* address, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        _base = address;
        _length = (nuint)length;
    }

    /// <summary>
    /// A vector over guest memory [<paramref name="address"/>, +<paramref name="length"/>): false when those bytes are
    /// not all inside one region (or wrap), or when <paramref name="deviceWrites"/> (a disk read fills the buffer) and
    /// the region is read-only (ROM). The region stays mapped until the machine is torn down, after its devices.
    /// </summary>
    public static bool TryFromGuest(GuestMemory memory, GuestAddress address, int length, bool deviceWrites, out IoVector vector)
    {
        ArgumentNullException.ThrowIfNull(memory);
        vector = default;
        if (length < 0) return false;
        GuestRegion? region = memory.FindRegion(address, (ulong)length);
        if (region is null || (deviceWrites && region.ReadOnly)) return false;
        // In bounds: FindRegion checked [address, address + length) against the region, wrap-around included.
        if (deviceWrites) memory.MarkWritten(address, (ulong)length); // a migration must send this page again
        vector = new IoVector((byte*)region.HostAddress + (address.Value - region.Start.Value), length);
        return true;
    }

    /// <summary>
    /// <paramref name="first"/> and <paramref name="second"/> as one vector when the second starts where the first ends
    /// and the sum fits in an int (both are memory the VM owns, so their union is too); false otherwise.
    /// </summary>
    public static bool TryJoin(IoVector first, IoVector second, out IoVector joined)
    {
        joined = default;
        if (first._base + first._length != second._base || first._length + second._length > int.MaxValue) return false;
        joined = new IoVector(first._base, (int)(first._length + second._length));
        return true;
    }

    /// <summary>A vector over <paramref name="span"/>, which must lie in native memory that outlives the request: the block layer's bounce buffers and tests only.</summary>
    internal static IoVector FromPinned(Span<byte> span) =>
        new((byte*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref MemoryMarshal.GetReference(span)), span.Length);

    /// <summary>Start of the buffer.</summary>
    public byte* Address => _base;

    /// <summary>Length in bytes.</summary>
    public ulong Length => _length;

    /// <summary>The buffer as a span.</summary>
    public Span<byte> AsSpan() => new(_base, (int)_length);

    /// <summary>Sum of the lengths (false when it would not fit in 63 bits, which no real request reaches).</summary>
    public static bool TryTotal(ReadOnlySpan<IoVector> buffers, out ulong total)
    {
        total = 0;
        foreach (var b in buffers)
        {
            total += b._length; // each length <= int.MaxValue: only a span of 2^32 buffers could overflow
            if (total > long.MaxValue) return false;
        }
        return true;
    }
}
