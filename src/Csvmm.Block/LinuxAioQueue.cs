using System.Runtime.InteropServices;

using Csvmm.Sys;

namespace Csvmm.Block;

/// <summary>
/// An <see cref="IDiskRequestQueue"/> on Linux native AIO (io_submit of IOCB_CMD_PREADV/PWRITEV with the
/// iovecs pointing straight at the caller's memory, completions announced on an eventfd through IOCB_FLAG_RESFD):
/// QEMU's aio=native. Only for an O_DIRECT file: on a buffered one io_submit would run the request synchronously.
/// Opened by <see cref="RawDisk.OpenRequestQueue"/>.
/// </summary>
/// <remarks>
/// <para>A fixed table of <see cref="Capacity"/> slots, each with its iocb and room for its iovecs, lives in native
/// memory allocated up front; a free list hands them out, so the request path allocates nothing. The queue holds a
/// reference on the disk's file descriptor until disposed, so the fd outlives every request.</para>
/// <para>One thread at a time (the device's I/O thread, or the thread that reset it after stopping that thread).</para>
/// <para>The context id io_setup returns is the address of the kernel's completion ring (fs/aio.c, struct
/// <see cref="AioRing"/>) mapped into the process. When its header checks out (magic, no incompatible features, the
/// header length this code knows), <see cref="CompletionsReady"/> and <see cref="Poll"/> read it directly, without a
/// system call, as libaio's and fio's user-space reaping do: read tail, then the events before it, then publish the
/// new head. io_getevents reads the same head, so both ways of reaping mix.</para>
/// </remarks>
internal sealed unsafe class LinuxAioQueue : IDiskRequestQueue
{
    private readonly DiskFileHandle _disk;
    private readonly int _fd;
    private readonly AioContextHandle _context;
    private readonly ulong _ctx;
    private readonly EventFdHandle _event;
    private readonly int _depth, _maxBuffers;
    private readonly ulong _offsetMask, _size;
    private readonly nuint _memoryMask;
    private readonly bool _readOnly;
    private readonly DiskCounters _counters;

    // Native, allocated once: slot i's iocb, its iovecs, the batch of iocb pointers for io_submit, the event buffer.
    private readonly IoCb* _iocbs;
    private readonly IoVector* _iov;
    private readonly IoCb** _batch;
    private readonly IoEvent* _events;

    // The kernel's completion ring, or null when its header is not the one this code knows.
    private readonly AioRing* _ring;
    private readonly IoEvent* _ringEvents;
    private readonly uint _ringCount;

    private readonly ulong[] _tokens;
    private readonly long[] _expected;
    private readonly int[] _free;
    private readonly DiskCompletion[] _ready; // finished without the kernel (synchronous fallback), not yet reaped
    private int _freeCount, _pendingCount, _submitted, _readyCount;
    private long _submittedTotal, _fallbacks, _shortCompletions;
    private bool _disposed;

    private LinuxAioQueue(DiskFileHandle disk, int fd, AioContextHandle context, EventFdHandle completion, int depth,
        int maxBuffers, ulong offsetMask, nuint memoryMask, bool readOnly, ulong size, DiskCounters counters)
    {
        _disk = disk;
        _fd = fd;
        _context = context;
        _ctx = context.Context;
        _event = completion;
        _depth = depth;
        _maxBuffers = maxBuffers;
        _offsetMask = offsetMask;
        _memoryMask = memoryMask;
        _readOnly = readOnly;
        _size = size;
        _counters = counters;
        _iocbs = (IoCb*)NativeMemory.AlignedAlloc((nuint)(depth * sizeof(IoCb)), 64);
        NativeMemory.Clear(_iocbs, (nuint)(depth * sizeof(IoCb)));
        _iov = (IoVector*)NativeMemory.Alloc((nuint)depth * (nuint)maxBuffers, (nuint)sizeof(IoVector));
        _batch = (IoCb**)NativeMemory.Alloc((nuint)depth, (nuint)sizeof(IoCb*));
        _events = (IoEvent*)NativeMemory.Alloc((nuint)depth, (nuint)sizeof(IoEvent));
        _tokens = new ulong[depth];
        _expected = new long[depth];
        _free = new int[depth];
        _ready = new DiskCompletion[depth];
        for (int i = 0; i < depth; i++) _free[i] = depth - 1 - i;
        _freeCount = depth;
        _ring = TryMapRing(_ctx, out _ringCount);
        if (_ring is not null) _ringEvents = (IoEvent*)((byte*)_ring + AioRing.HeaderLength);
    }

    /// <summary>The ring at <paramref name="context"/> when its header is the layout this code reads, else null.</summary>
    private static AioRing* TryMapRing(ulong context, out uint count)
    {
        count = 0;
        if (context == 0 || context % 4096 != 0) return null; // the kernel maps the ring at a page boundary
        var ring = (AioRing*)context;
        if (ring->RingMagic != AioRing.Magic || ring->IncompatFeatures != 0 || ring->RingHeaderLength != AioRing.HeaderLength
            || ring->Count == 0 || ring->Head >= ring->Count || ring->Tail >= ring->Count)
            return null;
        count = ring->Count;
        return ring;
    }

    /// <summary>True when completions are read straight from the kernel's ring (<see cref="Poll"/> finds them).</summary>
    internal bool ReadsRing => _ring is not null;

    /// <summary>
    /// A queue over <paramref name="disk"/>'s fd, or null with the errno of the call that failed (io_setup: EAGAIN
    /// past fs.aio-max-nr, ENOSYS without AIO; eventfd) or EBADF when the disk is closed.
    /// </summary>
    public static LinuxAioQueue? TryCreate(DiskFileHandle disk, int depth, int maxBuffers, ulong offsetMask, nuint memoryMask,
        bool readOnly, ulong size, DiskCounters counters, out int errno)
    {
        if (!disk.TryAcquire(out int fd))
        {
            errno = 9; // EBADF
            return null;
        }
        AioContextHandle? context = null;
        EventFdHandle? completion = null;
        try
        {
            errno = AioContextHandle.Create((uint)depth, out context);
            if (errno == 0) errno = EventFdHandle.TryCreate(out completion);
            if (errno != 0) return null;
            var queue = new LinuxAioQueue(disk, fd, context, completion!, depth, maxBuffers, offsetMask, memoryMask, readOnly, size, counters);
            context = null;
            completion = null;
            return queue;
        }
        finally
        {
            if (context is not null || completion is not null)
            {
                context?.Dispose();
                completion?.Dispose();
                disk.Release();
            }
        }
    }

    public int Capacity => _depth;
    public int InFlight => _depth - _freeCount + _readyCount;
    public EventFdHandle CompletionEvent => _event;

    /// <summary>Requests the kernel took (diagnostics).</summary>
    public long Submitted => _submittedTotal;

    /// <summary>Requests io_submit refused (EAGAIN...) and that were served synchronously instead.</summary>
    public long Fallbacks => _fallbacks;

    /// <summary>Completions that moved fewer bytes than asked and were finished synchronously.</summary>
    public long ShortCompletions => _shortCompletions;

    /// <summary>
    /// Tests: how many more iocbs io_submit may be given; past it, Submit acts as if the kernel took a prefix and
    /// then said EAGAIN.
    /// </summary>
    internal long SubmitBudget { get; set; } = long.MaxValue;

    public bool TryEnqueue(ulong offset, ReadOnlySpan<IoVector> buffers, bool write, ulong token)
    {
        if (_disposed || InFlight >= _depth || _freeCount == 0 || buffers.IsEmpty || buffers.Length > _maxBuffers) return false;
        if (write && _readOnly) return false;
        if (!IoVector.TryTotal(buffers, out ulong total) || total == 0 || total > int.MaxValue
            || offset > _size || total > _size - offset)
            return false;
        if ((offset & _offsetMask) != 0) return false;
        foreach (var b in buffers)
            if ((b.Length & _offsetMask) != 0 || ((nuint)b.Address & _memoryMask) != 0) return false;

        int slot = _free[--_freeCount];
        IoVector* iov = _iov + (nint)slot * _maxBuffers;
        buffers.CopyTo(new Span<IoVector>(iov, buffers.Length));
        IoCb* cb = _iocbs + slot;
        *cb = new IoCb
        {
            Data = (ulong)slot,
            Opcode = write ? AioAbi.CmdPwritev : AioAbi.CmdPreadv,
            FileDescriptor = (uint)_fd,
            Buffer = (ulong)iov,
            Bytes = (ulong)buffers.Length,
            Offset = (long)offset,
            Flags = AioAbi.FlagResfd,
            ResultFd = (uint)_event.Fd,
        };
        _tokens[slot] = token;
        _expected[slot] = (long)total;
        _batch[_pendingCount++] = cb;
        return true;
    }

    public void Submit()
    {
        int done = 0;
        while (done < _pendingCount)
        {
            int count = (int)Math.Min(_pendingCount - done, SubmitBudget);
            int errno = Errno.Eagain;
            long n = count > 0 ? AioSyscalls.Submit(_ctx, count, _batch + done, out errno) : -1;
            if (n > 0) SubmitBudget -= n;
            if (n > 0)
            {
                done += (int)n;
                _submitted += (int)n;
                _submittedTotal += n;
                continue;
            }
            if (n < 0 && errno == Errno.Eintr) continue;
            // EAGAIN (the kernel is short of resources) or a request it refuses: serve the rest here, synchronously.
            // The synchronous call reports any real error; the eventfd wakes the poller to reap them.
            for (int i = done; i < _pendingCount; i++)
            {
                int slot = (int)_batch[i]->Data;
                IoCb* cb = _iocbs + slot;
                var r = DiskSyscalls.TransferVector(_fd, (IoVector*)cb->Buffer, (int)cb->Bytes, cb->Offset, cb->Opcode == AioAbi.CmdPwritev);
                _fallbacks++;
                _ready[_readyCount++] = new DiskCompletion(_tokens[slot], Record(slot, r));
                Release(slot);
            }
            _event.Signal();
            break;
        }
        _pendingCount = 0;
    }

    public bool CompletionsReady
    {
        get
        {
            if (_readyCount > 0) return true;
            if (_disposed || _ring is null || _submitted == 0) return false; // io_destroy unmaps the ring
            return Volatile.Read(ref _ring->Tail) != Volatile.Read(ref _ring->Head);
        }
    }

    public int Poll(Span<DiskCompletion> completions)
    {
        if (_disposed) return 0;
        int got = 0;
        while (got < completions.Length && _readyCount > 0)
            completions[got++] = _ready[--_readyCount];
        if (_ring is null || _submitted == 0 || got == completions.Length) return got;
        uint head = Volatile.Read(ref _ring->Head);
        uint tail = Volatile.Read(ref _ring->Tail); // acquire: the events before tail are visible after it
        if (head >= _ringCount || tail >= _ringCount) return got; // not a ring the kernel keeps: leave it to io_getevents
        int taken = 0;
        while (head != tail && got < completions.Length && taken < _submitted)
        {
            IoEvent e = _ringEvents[head];
            head = head + 1 == _ringCount ? 0 : head + 1;
            taken++;
            int slot = (int)e.Data;
            if ((uint)slot >= (uint)_depth) continue; // not one of ours (cannot happen: Data is the slot we set)
            completions[got++] = new DiskCompletion(_tokens[slot], Record(slot, Finish(slot, e.Result)));
            Release(slot);
        }
        // release: the events are copied before the kernel may reuse their entries
        Volatile.Write(ref _ring->Head, head);
        _submitted -= taken;
        return got;
    }

    public int Reap(Span<DiskCompletion> completions, int minimum)
    {
        if (_disposed) return 0;
        _event.Consume(); // before looking: a completion after this point signals again
        int got = 0;
        while (got < completions.Length && _readyCount > 0)
            completions[got++] = _ready[--_readyCount];
        int room = Math.Min(completions.Length - got, _depth);
        if (room <= 0 || _submitted == 0) return got;
        int wait = Math.Clamp(minimum - got, 0, Math.Min(room, _submitted));
        if (wait == 0 && _ring is not null) return got + Poll(completions[got..]); // no need to ask the kernel
        AioTimespec zero = default;
        long n;
        int errno;
        do
        {
            n = AioSyscalls.GetEvents(_ctx, wait, room, _events, wait > 0 ? null : &zero, out errno);
        } while (n < 0 && errno == Errno.Eintr);
        if (n <= 0) return got; // only a bad context fails, and the queue owns its context
        for (int i = 0; i < (int)n; i++)
        {
            int slot = (int)_events[i].Data;
            completions[got++] = new DiskCompletion(_tokens[slot], Record(slot, Finish(slot, _events[i].Result)));
            Release(slot);
        }
        _submitted -= (int)n;
        return got;
    }

    public void DiscardAll()
    {
        if (_disposed) return;
        for (int i = 0; i < _pendingCount; i++) Release((int)_batch[i]->Data);
        _pendingCount = 0;
        while (_submitted > 0)
        {
            long n = AioSyscalls.GetEvents(_ctx, _submitted, _depth, _events, null, out int errno);
            if (n < 0 && errno == Errno.Eintr) continue;
            if (n <= 0) break; // cannot happen; io_destroy at dispose still waits for them
            for (int i = 0; i < (int)n; i++) Release((int)_events[i].Data);
            _submitted -= (int)n;
        }
        _readyCount = 0;
        _event.Consume();
    }

    private void Release(int slot) => _free[_freeCount++] = slot;

    private DiskIoResult Finish(int slot, long result)
    {
        long expected = _expected[slot];
        if (result >= 0 && result < expected) _shortCompletions++;
        IoCb* cb = _iocbs + slot;
        return Continue(_fd, (IoVector*)cb->Buffer, (int)cb->Bytes, cb->Offset, expected, result, cb->Opcode == AioAbi.CmdPwritev);
    }

    private DiskIoResult Record(int slot, DiskIoResult r)
    {
        if (!r.IsOk) _counters.RecordError();
        else if (_iocbs[slot].Opcode == AioAbi.CmdPwritev) _counters.RecordWrite((int)_expected[slot]);
        else _counters.RecordRead((int)_expected[slot]);
        return r;
    }

    /// <summary>
    /// The outcome of a request of <paramref name="expected"/> bytes the kernel finished with <paramref name="result"/>
    /// (io_event.res): all of it is success, a negative value is that errno, and a short count is continued
    /// synchronously from where it stopped (end of file first is <see cref="DiskIoStatus.EndOfFile"/> for reads).
    /// </summary>
    internal static DiskIoResult Continue(int fd, IoVector* iov, int count, long offset, long expected, long result, bool write)
    {
        if (result == expected) return DiskIoResult.Ok;
        if (result < 0) return DiskIoResult.Host(result < -4095 ? Errno.Eio : (int)-result);
        if (result > expected) return DiskIoResult.Host(Errno.Eio); // the kernel never moves more than asked
        ulong done = (ulong)result;
        int index = 0;
        while (index < count && done >= iov[index].Length)
        {
            done -= iov[index].Length;
            index++;
        }
        long position = offset + result;
        if (done > 0)
        {
            byte* rest = iov[index].Address + done;
            int remaining = (int)(iov[index].Length - done);
            DiskIoResult r = write ? DiskSyscalls.WriteFull(fd, rest, remaining, position) : DiskSyscalls.ReadFull(fd, rest, remaining, position);
            if (!r.IsOk) return r;
            position += remaining;
            index++;
        }
        return DiskSyscalls.TransferVector(fd, iov + index, count - index, position, write);
    }

    /// <summary>Waits for every request still in flight, then frees the context, the eventfd and the slots, and lets go of the disk's fd.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        DiscardAll();
        _disposed = true;
        _context.Dispose(); // io_destroy also waits for anything still in flight
        _event.Dispose();
        NativeMemory.AlignedFree(_iocbs);
        NativeMemory.Free(_iov);
        NativeMemory.Free(_batch);
        NativeMemory.Free(_events);
        _disk.Release();
    }
}
