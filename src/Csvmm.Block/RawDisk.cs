using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

using Csvmm.Sys;

namespace Csvmm.Block;

/// <summary>
/// A raw image (or a block device) as a guest disk: every request is one positional pread/pwrite (continued if
/// short) straight between the file and the caller's span, normally guest RAM. Created by <see cref="DiskOpener"/>.
/// </summary>
/// <remarks>
/// <para>cache=none opens the file O_DIRECT. Its alignment (<see cref="Alignment"/>) is BLKSSZGET for a block
/// device and statx(STATX_DIOALIGN) for a file (st_blksize on kernels before 6.1); the opener only enables O_DIRECT
/// when the disk size is a multiple of it. A request whose offset, length or buffer address is not aligned
/// goes through an aligned bounce buffer instead:
/// reads read the enclosing aligned blocks and copy out; writes read-modify-write the partial blocks at either
/// end. The buffer (from NativeMemory.AlignedAlloc, allocated on first need and reused) is guarded by a lock
/// that only that slow path takes; aligned requests take no lock and never copy.</para>
/// <para>All request methods are safe to call from several threads at once, and none throws.</para>
/// <para>With O_DIRECT, <see cref="OpenRequestQueue"/> gives a device Linux native AIO (<see cref="LinuxAioQueue"/>)
/// for the aligned reads and writes; everything else keeps this synchronous path.</para>
/// </remarks>
public sealed unsafe class RawDisk : IAsyncDiskBackend
{
    private const int BounceCapacity = 256 * 1024;

    private readonly DiskFileHandle _handle;
    private readonly ulong _size;
    private readonly bool _readOnly;
    private readonly bool _direct;
    private readonly ulong _offsetMask;
    private readonly nuint _memoryMask;
    private readonly Lock _bounceLock = new();
    private byte* _bounce;
    private bool _disposed;

    internal RawDisk(DiskFileHandle handle, string path, DiskFileKind kind, ulong size, bool readOnly,
        DirectIoAlignment alignment, DiskLockMode lockMode)
    {
        _handle = handle;
        _size = size;
        _readOnly = readOnly;
        _direct = alignment.IsDirect;
        _offsetMask = _direct ? alignment.Offset - 1UL : 0;
        _memoryMask = _direct ? alignment.Memory - 1U : 0;
        Path = path;
        Kind = kind;
        Alignment = alignment;
        LockMode = lockMode;
        Describe = $"{path} (raw {(kind == DiskFileKind.BlockDevice ? "block device" : "image")}, {size} bytes, " +
                   $"{(readOnly ? "read-only" : "read-write")}, " +
                   $"{(_direct ? $"cache=none (O_DIRECT, alignment {alignment.Offset}/{alignment.Memory} from {alignment.Source})" : "cache=writeback")}, " +
                   $"{LockMode switch { DiskLockMode.Exclusive => "exclusive lock", DiskLockMode.Shared => "shared lock", _ => "not locked" }})";
    }

    /// <summary>The canonical path of the image or device (symlinks resolved).</summary>
    public string Path { get; }

    public DiskFileKind Kind { get; }
    public ulong SizeBytes => _size;
    public bool ReadOnly => _readOnly;
    public int LogicalBlockSize => DiskValidation.SectorSize;
    public string Describe { get; }
    public DiskCounters Counters { get; } = new();

    /// <summary>True when requests bypass the host page cache (cache=none and the file system took O_DIRECT).</summary>
    public bool DirectIo => _direct;

    /// <summary>The O_DIRECT alignment in force, or <see cref="DirectIoAlignment.Buffered"/>.</summary>
    public DirectIoAlignment Alignment { get; }

    /// <summary>The OFD lock this disk holds on its image (until disposed, or handed over in a migration).</summary>
    public DiskLockMode LockMode { get; private set; }

    /// <summary>
    /// Lets go of the image lock (a migration's source, after the guest's last write reached the file and before the
    /// destination takes it over); <see cref="AcquireLock"/> takes it back if the migration fails.
    /// </summary>
    /// <exception cref="DiskException">The lock cannot be released.</exception>
    public void ReleaseLock()
    {
        if (LockMode is not (DiskLockMode.Shared or DiskLockMode.Exclusive)) return;
        if (!_handle.TryAcquire(out int fd)) throw new DiskException($"{Path}: the disk is closed");
        try
        {
            int err = DiskLock.Release(fd);
            if (err != 0) throw new DiskException($"{Path}: cannot release the image lock: {DiskValidation.DescribeOpenError(err, _readOnly)}", err);
            LockMode = DiskLockMode.Handed;
        }
        finally
        {
            _handle.Release();
        }
    }

    /// <summary>Takes the image lock a deferred open or <see cref="ReleaseLock"/> left untaken (a conflict is a DiskException).</summary>
    public void AcquireLock(Action<string>? warn = null)
    {
        if (LockMode != DiskLockMode.Handed) return;
        if (!_handle.TryAcquire(out int fd)) throw new DiskException($"{Path}: the disk is closed");
        try
        {
            LockMode = DiskLock.Acquire(fd, exclusive: !_readOnly, Path, warn);
        }
        finally
        {
            _handle.Release();
        }
    }

    public DiskIoResult Read(ulong offset, Span<byte> destination)
    {
        int length = destination.Length;
        if (!InRange(offset, (ulong)length)) return Counters.Error(DiskIoResult.OutOfRange);
        if (length == 0) return DiskIoResult.Ok;
        if (!_handle.TryAcquire(out int fd)) return Counters.Error(DiskIoResult.Closed);
        try
        {
            DiskIoResult r;
            fixed (byte* p = destination)
            {
                r = ReadCore(fd, offset, p, length);
            }
            if (r.IsOk) Counters.RecordRead(length);
            else Counters.RecordError();
            return r;
        }
        finally
        {
            _handle.Release();
        }
    }

    public DiskIoResult Write(ulong offset, ReadOnlySpan<byte> source)
    {
        int length = source.Length;
        if (_readOnly) return Counters.Error(DiskIoResult.ReadOnlyDisk);
        if (!InRange(offset, (ulong)length)) return Counters.Error(DiskIoResult.OutOfRange);
        if (length == 0) return DiskIoResult.Ok;
        if (!_handle.TryAcquire(out int fd)) return Counters.Error(DiskIoResult.Closed);
        try
        {
            DiskIoResult r;
            fixed (byte* p = source)
                r = WriteCore(fd, offset, p, length);
            if (r.IsOk) Counters.RecordWrite(length);
            else Counters.RecordError();
            return r;
        }
        finally
        {
            _handle.Release();
        }
    }

    /// <remarks>
    /// One preadv per IOV_MAX buffers straight into the caller's memory. With O_DIRECT, a request whose offset, or
    /// any buffer's address or length, is not aligned goes buffer by buffer through the path <see cref="Read"/>
    /// takes (aligned buffers direct, the others through the bounce buffer).
    /// </remarks>
    public DiskIoResult ReadVectored(ulong offset, ReadOnlySpan<IoVector> buffers) => Vectored(offset, buffers, write: false);

    /// <remarks>The gather counterpart of <see cref="ReadVectored"/> (pwritev).</remarks>
    public DiskIoResult WriteVectored(ulong offset, ReadOnlySpan<IoVector> buffers) => Vectored(offset, buffers, write: true);

    private DiskIoResult Vectored(ulong offset, ReadOnlySpan<IoVector> buffers, bool write)
    {
        if (write && _readOnly) return Counters.Error(DiskIoResult.ReadOnlyDisk);
        if (!IoVector.TryTotal(buffers, out ulong total) || !InRange(offset, total)) return Counters.Error(DiskIoResult.OutOfRange);
        if (total == 0) return DiskIoResult.Ok;
        if (!_handle.TryAcquire(out int fd)) return Counters.Error(DiskIoResult.Closed);
        try
        {
            DiskIoResult r;
            if (NeedsBounce(offset, buffers))
            {
                r = DiskIoResult.Ok;
                ulong position = offset;
                foreach (var b in buffers)
                {
                    int length = (int)b.Length;
                    if (length == 0) continue;
                    r = write ? WriteCore(fd, position, b.Address, length) : ReadCore(fd, position, b.Address, length);
                    if (!r.IsOk) break;
                    position += (ulong)length;
                }
            }
            else
            {
                fixed (IoVector* iov = buffers)
                    r = DiskSyscalls.TransferVector(fd, iov, buffers.Length, (long)offset, write);
            }
            if (!r.IsOk)
            {
                Counters.RecordError();
                return r;
            }
            RecordTransfer(total, buffers, write);
            return r;
        }
        finally
        {
            _handle.Release();
        }
    }

    private void RecordTransfer(ulong total, ReadOnlySpan<IoVector> buffers, bool write)
    {
        if (total <= int.MaxValue)
        {
            if (write) Counters.RecordWrite((int)total);
            else Counters.RecordRead((int)total);
            return;
        }
        // The counters take int byte counts: a request past 2 GiB is counted per buffer.
        foreach (var b in buffers)
        {
            if (write) Counters.RecordWrite((int)b.Length);
            else Counters.RecordRead((int)b.Length);
        }
    }

    /// <summary>With O_DIRECT: the offset, or some buffer's address or length, is not aligned.</summary>
    private bool NeedsBounce(ulong offset, ReadOnlySpan<IoVector> buffers)
    {
        if (!_direct) return false;
        if ((offset & _offsetMask) != 0) return true;
        foreach (var b in buffers)
            if ((b.Length & _offsetMask) != 0 || ((nuint)b.Address & _memoryMask) != 0) return true;
        return false;
    }

    /// <summary>
    /// A Linux AIO queue (aio=native) when the disk is O_DIRECT; null for buffered I/O (the page cache makes the
    /// synchronous path fastest there) or when the kernel refuses an AIO context (<see cref="LastQueueError"/> says why).
    /// It takes only requests whose offset, lengths and buffer addresses meet <see cref="Alignment"/>.
    /// </summary>
    public IDiskRequestQueue? OpenRequestQueue(int depth, int maxBuffers)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(depth, 65536);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBuffers, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxBuffers, IAsyncDiskBackend.MaxBuffers);
        if (!_direct) return null;
        var queue = LinuxAioQueue.TryCreate(_handle, depth, maxBuffers, _offsetMask, _memoryMask, _readOnly, _size, Counters, out int errno);
        LastQueueError = errno;
        return queue;
    }

    /// <summary>The errno of the last <see cref="OpenRequestQueue"/> that could not create its AIO context, or 0.</summary>
    public int LastQueueError { get; private set; }

    public DiskIoResult Flush()
    {
        // Nothing can be dirty on a read-only open: report success without a system call.
        if (_readOnly)
        {
            Counters.RecordFlush();
            return DiskIoResult.Ok;
        }
        if (!_handle.TryAcquire(out int fd)) return Counters.Error(DiskIoResult.Closed);
        try
        {
            int err = DiskSyscalls.Fdatasync(fd);
            if (err != 0) return Counters.Error(DiskIoResult.Host(err));
            Counters.RecordFlush();
            return DiskIoResult.Ok;
        }
        finally
        {
            _handle.Release();
        }
    }

    /// <remarks>fallocate(PUNCH_HOLE | KEEP_SIZE). A file system or device that cannot punch holes makes this a successful no-op.</remarks>
    public DiskIoResult Discard(ulong offset, ulong length)
    {
        if (_readOnly) return Counters.Error(DiskIoResult.ReadOnlyDisk);
        if (!InRange(offset, length)) return Counters.Error(DiskIoResult.OutOfRange);
        if (length == 0) return DiskIoResult.Ok;
        if (!_handle.TryAcquire(out int fd)) return Counters.Error(DiskIoResult.Closed);
        try
        {
            int err = DiskSyscalls.Fallocate(fd, NativeConstants.FallocPunchHole | NativeConstants.FallocKeepSize, (long)offset, (long)length);
            if (err != 0 && !IsUnsupported(err)) return Counters.Error(DiskIoResult.Host(err));
            Counters.RecordDiscard();
            return DiskIoResult.Ok;
        }
        finally
        {
            _handle.Release();
        }
    }

    /// <remarks>
    /// With <paramref name="unmap"/>: fallocate(PUNCH_HOLE | KEEP_SIZE); without, or where holes are unsupported:
    /// fallocate(ZERO_RANGE | KEEP_SIZE); where neither is supported: plain writes of zeroes.
    /// </remarks>
    public DiskIoResult WriteZeroes(ulong offset, ulong length, bool unmap)
    {
        if (_readOnly) return Counters.Error(DiskIoResult.ReadOnlyDisk);
        if (!InRange(offset, length)) return Counters.Error(DiskIoResult.OutOfRange);
        if (length == 0) return DiskIoResult.Ok;
        if (!_handle.TryAcquire(out int fd)) return Counters.Error(DiskIoResult.Closed);
        try
        {
            int err = Errno.Eopnotsupp;
            if (unmap) err = DiskSyscalls.Fallocate(fd, NativeConstants.FallocPunchHole | NativeConstants.FallocKeepSize, (long)offset, (long)length);
            if (err != 0 && IsUnsupported(err))
                err = DiskSyscalls.Fallocate(fd, NativeConstants.FallocZeroRange | NativeConstants.FallocKeepSize, (long)offset, (long)length);
            DiskIoResult r = err == 0 ? DiskIoResult.Ok
                : IsUnsupported(err) ? WriteZeroesByWriting(fd, offset, length)
                : DiskIoResult.Host(err);
            if (r.IsOk) Counters.RecordWriteZeroes();
            else Counters.RecordError();
            return r;
        }
        finally
        {
            _handle.Release();
        }
    }

    /// <summary>The fallback of <see cref="WriteZeroes"/>, callable on its own by tests: writes zeroes through the ordinary write path.</summary>
    internal DiskIoResult WriteZeroesByWriting(ulong offset, ulong length)
    {
        if (_readOnly) return DiskIoResult.ReadOnlyDisk;
        if (!InRange(offset, length)) return DiskIoResult.OutOfRange;
        if (!_handle.TryAcquire(out int fd)) return DiskIoResult.Closed;
        try
        {
            return WriteZeroesByWriting(fd, offset, length);
        }
        finally
        {
            _handle.Release();
        }
    }

    private DiskIoResult WriteZeroesByWriting(int fd, ulong offset, ulong length)
    {
        while (length > 0)
        {
            int chunk = (int)Math.Min(length, (ulong)ZeroBuffer.Length);
            DiskIoResult r = WriteCore(fd, offset, ZeroBuffer.Pointer, chunk);
            if (!r.IsOk) return r;
            offset += (ulong)chunk;
            length -= (ulong)chunk;
        }
        return DiskIoResult.Ok;
    }

    /// <summary>[offset, offset + length) lies inside the disk. Written so that nothing can overflow.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool InRange(ulong offset, ulong length) => offset <= _size && length <= _size - offset;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool NeedsBounce(ulong offset, int length, byte* buffer) =>
        _direct && (((offset | (uint)length) & _offsetMask) != 0 || ((nuint)buffer & _memoryMask) != 0);

    private static bool IsUnsupported(int errno) => errno is Errno.Eopnotsupp or Errno.Einval or Errno.Enosys;

    private DiskIoResult ReadCore(int fd, ulong offset, byte* destination, int length) =>
        NeedsBounce(offset, length, destination)
            ? BouncedRead(fd, offset, destination, length)
            : DiskSyscalls.ReadFull(fd, destination, length, (long)offset);

    private DiskIoResult WriteCore(int fd, ulong offset, byte* source, int length) =>
        NeedsBounce(offset, length, source)
            ? BouncedWrite(fd, offset, source, length)
            : DiskSyscalls.WriteFull(fd, source, length, (long)offset);

    // The bounce paths rely on the opener's guarantee that the disk size is a multiple of the offset alignment,
    // so the aligned blocks around any in-range request are inside the file.

    private DiskIoResult BouncedRead(int fd, ulong offset, byte* destination, int length)
    {
        Counters.RecordBounce();
        lock (_bounceLock)
        {
            byte* bounce = AcquireBounce();
            if (bounce == null) return DiskIoResult.Closed;
            int done = 0;
            while (done < length)
            {
                var (start, head, span, n) = NextChunk(offset, done, length);
                DiskIoResult r = DiskSyscalls.ReadFull(fd, bounce, span, (long)start);
                if (!r.IsOk) return r;
                new ReadOnlySpan<byte>(bounce + head, n).CopyTo(new Span<byte>(destination + done, n));
                done += n;
            }
            return DiskIoResult.Ok;
        }
    }

    private DiskIoResult BouncedWrite(int fd, ulong offset, byte* source, int length)
    {
        Counters.RecordBounce();
        int block = (int)(_offsetMask + 1);
        lock (_bounceLock)
        {
            byte* bounce = AcquireBounce();
            if (bounce == null) return DiskIoResult.Closed;
            int done = 0;
            while (done < length)
            {
                var (start, head, span, n) = NextChunk(offset, done, length);
                int end = head + n;

                // Read-modify-write only the partial blocks at either end of this chunk.
                if (head != 0)
                {
                    DiskIoResult r = DiskSyscalls.ReadFull(fd, bounce, block, (long)start);
                    if (!r.IsOk) return r;
                }
                int lastBlock = end & ~(block - 1);
                if ((end & (block - 1)) != 0 && !(head != 0 && lastBlock == 0))
                {
                    DiskIoResult r = DiskSyscalls.ReadFull(fd, bounce + lastBlock, block, (long)start + lastBlock);
                    if (!r.IsOk) return r;
                }
                new ReadOnlySpan<byte>(source + done, n).CopyTo(new Span<byte>(bounce + head, n));
                DiskIoResult w = DiskSyscalls.WriteFull(fd, bounce, span, (long)start);
                if (!w.IsOk) return w;
                done += n;
            }
            return DiskIoResult.Ok;
        }
    }

    private ulong AlignUp(ulong value) => (value + _offsetMask) & ~_offsetMask;

    /// <summary>
    /// The next bounce-buffer chunk of a request at <paramref name="offset"/> of which <paramref name="done"/> bytes are
    /// finished: the aligned disk position to transfer, where the request's bytes start inside it (head), how many bytes
    /// the aligned transfer covers (span), and how many of the request's bytes it carries (n).
    /// </summary>
    private (ulong Start, int Head, int Span, int N) NextChunk(ulong offset, int done, int length)
    {
        ulong pos = offset + (ulong)done;
        ulong start = pos & ~_offsetMask;
        int head = (int)(pos - start);
        int remaining = length - done;
        int span = (int)Math.Min(BounceCapacity, AlignUp((ulong)head + (ulong)remaining));
        return (start, head, span, Math.Min(span - head, remaining));
    }

    /// <summary>The bounce buffer, allocated on first use (caller holds the lock); null once disposed.</summary>
    private byte* AcquireBounce()
    {
        if (_disposed) return null;
        if (_bounce == null)
            _bounce = (byte*)NativeMemory.AlignedAlloc(BounceCapacity, Math.Max((nuint)(_offsetMask + 1), _memoryMask + 1));
        return _bounce;
    }

    /// <summary>Closes the image (dropping its lock) once no request is using it, and frees the bounce buffer.</summary>
    public void Dispose()
    {
        lock (_bounceLock)
        {
            if (_disposed) return;
            _disposed = true;
            if (_bounce != null)
            {
                NativeMemory.AlignedFree(_bounce);
                _bounce = null;
            }
        }
        _handle.Dispose();
    }

    public override string ToString() => Describe;

    /// <summary>64 KiB of zeroes, page aligned so O_DIRECT takes it as is; allocated once per process, never freed.</summary>
    private static class ZeroBuffer
    {
        public const int Length = 64 * 1024;
        public static readonly byte* Pointer = Allocate();

        private static byte* Allocate()
        {
            var p = (byte*)NativeMemory.AlignedAlloc(Length, 4096);
            NativeMemory.Clear(p, Length);
            return p;
        }
    }
}
