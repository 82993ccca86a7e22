using System.Buffers.Binary;
using System.Text;
using Csvmm.Block;
using Csvmm.Sys;
using Csvmm.Memory;

namespace Csvmm.Virtio;

/// <summary>virtio-blk constants (virtio 1.2 §5.2).</summary>
public static class VirtioBlkConstants
{
    /// <summary>Device feature bits.</summary>
    public const int FeatureSizeMax = 1, FeatureSegMax = 2, FeatureGeometry = 4, FeatureRo = 5, FeatureBlkSize = 6,
        FeatureFlush = 9, FeatureTopology = 10, FeatureConfigWce = 11, FeatureMq = 12, FeatureDiscard = 13,
        FeatureWriteZeroes = 14;

    /// <summary>Request types.</summary>
    public const uint TypeIn = 0, TypeOut = 1, TypeFlush = 4, TypeGetId = 8, TypeGetLifetime = 10, TypeDiscard = 11,
        TypeWriteZeroes = 13, TypeSecureErase = 14;

    /// <summary>Status values.</summary>
    public const byte StatusOk = 0, StatusIoErr = 1, StatusUnsupp = 2;

    /// <summary>Request header size (le32 type, le32 reserved, le64 sector).</summary>
    public const int HeaderSize = 16;

    /// <summary>Size of struct virtio_blk_discard_write_zeroes (le64 sector, le32 num_sectors, le32 flags).</summary>
    public const int RangeSize = 16;

    /// <summary>The one defined flag of a discard/write-zeroes range.</summary>
    public const uint RangeFlagUnmap = 1;

    /// <summary>virtio-blk sectors are 512 bytes whatever blk_size says.</summary>
    public const int SectorSize = 512;

    /// <summary>Bytes of the GET_ID answer.</summary>
    public const int IdBytes = 20;

    /// <summary>Configuration layout offsets (struct virtio_blk_config).</summary>
    public const int ConfigCapacity = 0, ConfigSizeMax = 8, ConfigSegMax = 12, ConfigGeometry = 16, ConfigBlkSize = 20,
        ConfigPhysicalBlockExp = 24, ConfigAlignmentOffset = 25, ConfigMinIoSize = 26, ConfigOptIoSize = 28,
        ConfigWriteback = 32, ConfigNumQueues = 34, ConfigMaxDiscardSectors = 36, ConfigMaxDiscardSeg = 40,
        ConfigDiscardSectorAlignment = 44, ConfigMaxWriteZeroesSectors = 48, ConfigMaxWriteZeroesSeg = 52,
        ConfigWriteZeroesMayUnmap = 56, ConfigLength = 60;
}

/// <summary>Tunables of a virtio-blk device; the defaults suit Linux guests.</summary>
public sealed record VirtioBlkOptions
{
    /// <summary>Serial number returned by GET_ID (ASCII, at most 20 bytes; longer is cut).</summary>
    public string? Serial { get; init; }

    /// <summary>Maximum (and initial) queue size: a power of two.</summary>
    public ushort QueueSize { get; init; } = 256;

    /// <summary>seg_max: data segments per request (the header and status descriptors come on top).</summary>
    public uint SegMax { get; init; } = 254;

    /// <summary>size_max: largest single segment in bytes.</summary>
    public uint SizeMax { get; init; } = 1 << 20;

    /// <summary>max_discard_sectors and max_write_zeroes_sectors per range.</summary>
    public uint MaxDiscardSectors { get; init; } = 0x3F_FFFF;

    /// <summary>max_discard_seg and max_write_zeroes_seg: ranges per request.</summary>
    public uint MaxDiscardSegments { get; init; } = 32;

    /// <summary>discard_sector_alignment (sectors): the granularity the guest should discard in.</summary>
    public uint DiscardSectorAlignment { get; init; } = 8;

    /// <summary>
    /// With a value, VIRTIO_BLK_F_TOPOLOGY is offered with physical_block_exp = this (log2 of physical blocks per
    /// logical block, e.g. 3 for 4 KiB physical sectors).
    /// </summary>
    public byte? PhysicalBlockExponent { get; init; }

    /// <summary>
    /// Serve aligned reads and writes of an O_DIRECT disk asynchronously (Linux AIO, up to a queue's worth in flight)
    /// when the backend offers it (<see cref="IAsyncDiskBackend"/>). False: everything synchronous.
    /// </summary>
    public bool AsyncIo { get; init; } = true;

    /// <summary>
    /// Adaptive polling: the longest the I/O thread busy-waits for the next request or completion before it sleeps
    /// in poll(2) (QEMU's poll-max-ns); the window adapts below it, so an idle device costs no CPU. Zero disables.
    /// At most <see cref="VirtioIoThread.MaxPollMax"/>. 200 µs: long enough to catch an O_DIRECT 128 KiB read's
    /// completion here (~120-150 µs), which a 50 µs window missed (cache=none sequential QD1: 767 → 1,028 MB/s).
    /// </summary>
    public TimeSpan PollMax { get; init; } = TimeSpan.FromMicroseconds(200);
}

/// <summary>virtio-blk request counters (written by the I/O thread only; read from anywhere).</summary>
public sealed class VirtioBlkCounters
{
    internal long RequestsField, ReadBytesField, WrittenBytesField, FlushesField, DiscardsField, WriteZeroesField,
        GetIdsField, IoErrorsField, UnsupportedField, MalformedField, NotificationsField, AsyncRequestsField, FlushWaitsField, PolledCompletionsField;

    /// <summary>Chains taken from the queue.</summary>
    public long Requests => Volatile.Read(ref RequestsField);
    /// <summary>Bytes read from the disk into the guest.</summary>
    public long ReadBytes => Volatile.Read(ref ReadBytesField);
    /// <summary>Bytes written from the guest to the disk.</summary>
    public long WrittenBytes => Volatile.Read(ref WrittenBytesField);
    /// <summary>Successful flushes.</summary>
    public long Flushes => Volatile.Read(ref FlushesField);
    /// <summary>Successful discard requests.</summary>
    public long Discards => Volatile.Read(ref DiscardsField);
    /// <summary>Successful write-zeroes requests.</summary>
    public long WriteZeroes => Volatile.Read(ref WriteZeroesField);
    /// <summary>GET_ID requests answered.</summary>
    public long GetIds => Volatile.Read(ref GetIdsField);
    /// <summary>Requests completed with VIRTIO_BLK_S_IOERR (malformed or failed).</summary>
    public long IoErrors => Volatile.Read(ref IoErrorsField);
    /// <summary>Requests completed with VIRTIO_BLK_S_UNSUPP.</summary>
    public long Unsupported => Volatile.Read(ref UnsupportedField);
    /// <summary>Chains returned with length 0 and no status (broken chain, no status byte).</summary>
    public long Malformed => Volatile.Read(ref MalformedField);
    /// <summary>Used-buffer notifications sent.</summary>
    public long Notifications => Volatile.Read(ref NotificationsField);
    /// <summary>Reads and writes handed to the disk's asynchronous queue instead of served synchronously.</summary>
    public long AsyncRequests => Volatile.Read(ref AsyncRequestsField);
    /// <summary>Flushes that first waited for asynchronous writes still in flight.</summary>
    public long FlushWaits => Volatile.Read(ref FlushWaitsField);
    /// <summary>Asynchronous requests completed by the busy-waiting I/O thread (found in the kernel's ring, no system call).</summary>
    public long PolledCompletions => Volatile.Read(ref PolledCompletionsField);

    public override string ToString() =>
        $"requests={Requests} read={ReadBytes} B written={WrittenBytes} B flushes={Flushes} discards={Discards} " +
        $"write-zeroes={WriteZeroes} get-id={GetIds} ioerr={IoErrors} unsupp={Unsupported} malformed={Malformed} irqs={Notifications} " +
        $"async={AsyncRequests} flush-waits={FlushWaits} polled-completions={PolledCompletions}";
}

/// <summary>
/// A virtio block device over an <see cref="IDiskBackend"/> (virtio 1.2 §5.2): one request queue served on its own
/// I/O thread, data moved straight between the disk and guest RAM with vectored I/O.
/// </summary>
/// <remarks>
/// <para>Every request is validated before the disk is touched: header size, the status byte (the last
/// device-writable byte), the data direction for the type, sector multiples, the range against the capacity with
/// overflow checks, the read-only flag, every discard/write-zeroes range. A bad request gets
/// VIRTIO_BLK_S_IOERR (VIRTIO_BLK_S_UNSUPP for an unknown type or flag); a chain without a status byte is returned
/// with length 0. The guest may rewrite descriptors at any time: the chain is copied once and only the copy is used.</para>
/// <para>With an O_DIRECT disk (<see cref="IAsyncDiskBackend"/>), reads and writes whose buffers meet the disk's
/// alignment are queued to Linux AIO, submitted once per batch, and completed from the I/O thread when the queue's
/// completion eventfd fires: status byte, used element, one notification per batch. The in-flight table is indexed
/// by the chain's head (unique among chains the driver has not got back), preallocated, so nothing allocates. A
/// FLUSH first waits for the writes in flight, so it never covers less than the guest has seen completed. A reset
/// waits for every request in flight before it returns: nothing writes guest memory afterwards. Everything else
/// (and any request the queue does not take) is served synchronously, as without AIO.</para>
/// <para>The device does not own the disk: the caller disposes it after the device.</para>
/// </remarks>
public sealed class VirtioBlk : IVirtioDevice, IQueueProcessor, IQueuePoller
{
    /// <summary>Descriptors per request the device handles (IOV_MAX data buffers plus header and status); more is IOERR.</summary>
    public const int MaxRequestDescriptors = 1024 + 2;

    private readonly IDiskBackend _disk;
    private readonly VirtioBlkOptions _options;
    private readonly byte[] _config = new byte[VirtioBlkConstants.ConfigLength];
    private readonly byte[] _serial = new byte[VirtioBlkConstants.IdBytes];
    private readonly ulong _features;
    private readonly DescriptorSegment[] _segments = new DescriptorSegment[MaxRequestDescriptors];
    private readonly IoVector[] _iov = new IoVector[MaxRequestDescriptors];
    private readonly (ulong Offset, ulong Length, bool Unmap)[] _ranges;
    private readonly Lock _lifecycle = new();

    // Activation state: written under _lifecycle while the I/O thread is stopped, read by the I/O thread.
    private GuestMemory? _memory;
    private VirtioQueue[] _queues = [];
    private IVirtioInterrupt? _interrupt;
    private VirtioIoThread? _thread;
    private bool _needsResetSent;

    // The request being processed (I/O thread only).
    private int _segmentCount, _firstWritable;
    private ushort _head;
    private bool _deferred, _completedInline;

    // Asynchronous I/O: the disk's request queue (opened at the first activation, kept until disposal) and the
    // requests in flight, indexed by head. I/O thread only, or the resetting thread once that has stopped.
    private IDiskRequestQueue? _aio;
    private DiskCompletion[] _completions = [];
    private readonly bool[] _inFlight;
    private readonly bool[] _inFlightWrite;
    private readonly GuestAddress[] _inFlightStatus;
    private readonly uint[] _inFlightUsed;
    private readonly ulong[] _inFlightBytes;
    private int _inFlightWrites;

    /// <param name="disk">The backing disk (not owned).</param>
    /// <param name="options">Tunables; null for the defaults.</param>
    public VirtioBlk(IDiskBackend disk, VirtioBlkOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(disk);
        options ??= new VirtioBlkOptions();
        if (options.QueueSize == 0 || options.QueueSize > Virtq.MaxQueueSize || (options.QueueSize & (options.QueueSize - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.QueueSize, "queue size must be a power of two up to 32768");
        if (options.SegMax == 0 || options.SizeMax < 4096 || options.MaxDiscardSegments is 0 or > 256 || options.MaxDiscardSectors == 0)
            throw new ArgumentOutOfRangeException(nameof(options), "seg_max, size_max (>= 4096), discard limits must be positive (at most 256 ranges)");
        if (options.PollMax < TimeSpan.Zero || options.PollMax > VirtioIoThread.MaxPollMax)
            throw new ArgumentOutOfRangeException(nameof(options), options.PollMax, "the poll window must be between 0 and 1 ms");
        _disk = disk;
        _options = options;
        _ranges = new (ulong, ulong, bool)[options.MaxDiscardSegments];
        _inFlight = new bool[options.QueueSize];
        _inFlightWrite = new bool[options.QueueSize];
        _inFlightStatus = new GuestAddress[options.QueueSize];
        _inFlightUsed = new uint[options.QueueSize];
        _inFlightBytes = new ulong[options.QueueSize];
        if (options.Serial is { } serial)
            Encoding.ASCII.GetBytes(serial.AsSpan(0, Math.Min(serial.Length, VirtioBlkConstants.IdBytes)), _serial);

        ulong f = VirtioFeatures.Version1 | VirtioFeatures.IndirectDesc | VirtioFeatures.EventIdx
            | Bit(VirtioBlkConstants.FeatureSegMax) | Bit(VirtioBlkConstants.FeatureSizeMax)
            | Bit(VirtioBlkConstants.FeatureBlkSize) | Bit(VirtioBlkConstants.FeatureFlush);
        if (disk.ReadOnly) f |= Bit(VirtioBlkConstants.FeatureRo);
        else f |= Bit(VirtioBlkConstants.FeatureDiscard) | Bit(VirtioBlkConstants.FeatureWriteZeroes);
        if (options.PhysicalBlockExponent is not null) f |= Bit(VirtioBlkConstants.FeatureTopology);
        _features = f;
        BuildConfig();
    }

    private static ulong Bit(int bit) => 1UL << bit;

    private void BuildConfig()
    {
        var c = _config.AsSpan();
        BinaryPrimitives.WriteUInt64LittleEndian(c[VirtioBlkConstants.ConfigCapacity..], _disk.SizeBytes / VirtioBlkConstants.SectorSize);
        BinaryPrimitives.WriteUInt32LittleEndian(c[VirtioBlkConstants.ConfigSizeMax..], _options.SizeMax);
        BinaryPrimitives.WriteUInt32LittleEndian(c[VirtioBlkConstants.ConfigSegMax..], _options.SegMax);
        BinaryPrimitives.WriteUInt32LittleEndian(c[VirtioBlkConstants.ConfigBlkSize..], (uint)_disk.LogicalBlockSize);
        if (_options.PhysicalBlockExponent is { } exp)
        {
            c[VirtioBlkConstants.ConfigPhysicalBlockExp] = exp;
            BinaryPrimitives.WriteUInt16LittleEndian(c[VirtioBlkConstants.ConfigMinIoSize..], (ushort)(1 << Math.Min((int)exp, 15)));
        }
        BinaryPrimitives.WriteUInt16LittleEndian(c[VirtioBlkConstants.ConfigNumQueues..], 1);
        if (!_disk.ReadOnly)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(c[VirtioBlkConstants.ConfigMaxDiscardSectors..], _options.MaxDiscardSectors);
            BinaryPrimitives.WriteUInt32LittleEndian(c[VirtioBlkConstants.ConfigMaxDiscardSeg..], _options.MaxDiscardSegments);
            BinaryPrimitives.WriteUInt32LittleEndian(c[VirtioBlkConstants.ConfigDiscardSectorAlignment..], _options.DiscardSectorAlignment);
            BinaryPrimitives.WriteUInt32LittleEndian(c[VirtioBlkConstants.ConfigMaxWriteZeroesSectors..], _options.MaxDiscardSectors);
            BinaryPrimitives.WriteUInt32LittleEndian(c[VirtioBlkConstants.ConfigMaxWriteZeroesSeg..], _options.MaxDiscardSegments);
            c[VirtioBlkConstants.ConfigWriteZeroesMayUnmap] = 1;
        }
    }

    /// <summary>Request counters.</summary>
    public VirtioBlkCounters Counters { get; } = new();

    /// <summary>The backing disk.</summary>
    public IDiskBackend Disk => _disk;

    /// <summary>True while the I/O thread runs.</summary>
    public bool IsRunning { get { lock (_lifecycle) return _thread?.IsRunning == true; } }

    /// <summary>The running I/O thread (diagnostics: wake-ups, work found by polling), or null.</summary>
    public VirtioIoThread? IoThread { get { lock (_lifecycle) return _thread; } }

    /// <summary>True when reads and writes that qualify go through the disk's asynchronous queue.</summary>
    public bool AsyncIo { get { lock (_lifecycle) return _aio is not null; } }

    /// <summary>The exception that stopped the I/O thread (a device bug), if any.</summary>
    public Exception? Fault { get; private set; }

    public ushort DeviceType => VirtioDeviceType.Block;
    /// <summary>Mass storage, "other" (0x0180).</summary>
    public uint PciClassCode => 0x01_80_00;
    public ulong DeviceFeatures => _features;
    public int QueueCount => 1;
    public ushort MaxQueueSize(int queue) => queue == 0 ? _options.QueueSize : (ushort)0;
    public int ConfigSize => VirtioBlkConstants.ConfigLength;

    public void ReadConfig(int offset, Span<byte> data)
    {
        if (offset < 0 || offset > _config.Length - data.Length)
        {
            data.Clear();
            return;
        }
        _config.AsSpan(offset, data.Length).CopyTo(data);
    }

    /// <summary>Every field is read-only (writeback needs VIRTIO_BLK_F_CONFIG_WCE, not offered).</summary>
    public void WriteConfig(int offset, ReadOnlySpan<byte> data) { }

    public void Activate(VirtioActivation activation)
    {
        lock (_lifecycle)
        {
            if (_thread is not null || _memory is not null) throw new InvalidOperationException("virtio-blk is already active");
            Attach(activation);
            if (!activation.Quiesced) StartThread();
        }
    }

    /// <summary>Caller holds _lifecycle; the device is attached and no thread runs.</summary>
    private void StartThread()
    {
        var events = new EventFdHandle[_queues.Length];
        for (int i = 0; i < events.Length; i++) events[i] = _queues[i].Notify;
        var interrupt = _interrupt!;
        _thread = new VirtioIoThread("virtio-blk", events, this, _aio?.CompletionEvent, _options.PollMax)
        {
            Faulted = e =>
            {
                Fault = e;
                interrupt.SetNeedsReset();
            },
        };
        _thread.Start();
    }

    /// <summary>True between <see cref="Quiesce"/> (or a quiesced activation) and <see cref="Resume"/>.</summary>
    public bool IsQuiesced { get { lock (_lifecycle) return _memory is not null && _thread is null; } }

    public void Quiesce()
    {
        lock (_lifecycle)
        {
            if (_thread is null) return; // not active, or already quiesced
            _thread.Dispose(); // joins the I/O thread
            _thread = null;
            if (Fault is not null) return; // the thread died on a device bug: the driver was told to reset
            CompleteInFlight();
        }
    }

    public void Resume()
    {
        lock (_lifecycle)
        {
            if (_memory is null || _thread is not null || Fault is not null) return;
            // A notification consumed before the quiesce may have left buffers unread: look at every queue once.
            foreach (var q in _queues) q.Notify.Signal();
            StartThread();
        }
    }

    /// <summary>
    /// Waits for every asynchronous request in flight and completes it into the used ring, then notifies the driver.
    /// Only with the I/O thread stopped (the state it owns is then ours).
    /// </summary>
    private void CompleteInFlight()
    {
        if (_aio is not { } aio || _queues.Length == 0) return;
        aio.Submit();
        var vq = _queues[0];
        bool any = false;
        while (aio.InFlight > 0)
            any |= ReapCompletions(vq.Queue, 1);
        if (any) Notify(vq);
    }

    /// <summary>Takes the queues without starting the I/O thread (tests drive <see cref="ProcessQueue"/> themselves).</summary>
    internal void Attach(VirtioActivation activation)
    {
        ArgumentNullException.ThrowIfNull(activation);
        _memory = activation.Memory;
        _interrupt = activation.Interrupt;
        _queues = [.. activation.Queues];
        _needsResetSent = false;
        if (_aio is null && _options.AsyncIo && _disk is IAsyncDiskBackend async)
        {
            _aio = async.OpenRequestQueue(_options.QueueSize, (int)Math.Min(_options.SegMax, (uint)IAsyncDiskBackend.MaxBuffers));
            _completions = _aio is null ? [] : new DiskCompletion[_aio.Capacity];
        }
    }

    public void Reset()
    {
        lock (_lifecycle)
        {
            _thread?.Dispose(); // joins the I/O thread
            _thread = null;
            DiscardInFlight(); // then waits for the disk requests it left in flight
            _queues = [];
            _memory = null;
            _interrupt = null;
        }
    }

    /// <summary>Resets, then closes the asynchronous queue.</summary>
    public void Dispose()
    {
        Reset();
        lock (_lifecycle)
        {
            _aio?.Dispose();
            _aio = null;
        }
    }

    /// <summary>
    /// Waits for every asynchronous request to finish and forgets them without touching the rings (the driver reset
    /// the device: its buffers are no longer ours to complete). Only with the I/O thread stopped.
    /// </summary>
    private void DiscardInFlight()
    {
        _aio?.DiscardAll();
        Array.Clear(_inFlight);
        _inFlightWrites = 0;
        _deferred = _completedInline = false;
    }

    // ---- the I/O thread ----------------------------------------------------------------------------------

    /// <summary>Drains queue slot <paramref name="slot"/> and notifies the driver once for the batch if it wants it.</summary>
    public void ProcessQueue(int slot)
    {
        var queues = _queues;
        if ((uint)slot >= (uint)queues.Length) return;
        var vq = queues[slot];
        var queue = vq.Queue;
        bool completed = false;
        while (true)
        {
            while (queue.TryPopAvail(out var chain))
            {
                uint used = Process(chain);
                if (_deferred)
                {
                    _deferred = false; // queued to the disk: completed by ProcessCompletions
                    continue;
                }
                queue.AddUsed(chain.Head, used);
                completed = true;
            }
            if (queue.IsBroken || !queue.EventIdx) break;
            // Ask for a notification at the next buffer, then look again: one made available before the driver
            // saw avail_event would otherwise wait for a notification that never comes.
            queue.SetAvailEvent();
            if (!queue.HasAvailable) break;
        }
        _aio?.Submit(); // the batch's asynchronous requests in one system call
        if (_completedInline)
        {
            _completedInline = false; // a FLUSH waited for writes and completed them
            completed = true;
        }
        if (completed) Notify(vq);
        if (queue.IsBroken && !_needsResetSent)
        {
            _needsResetSent = true;
            _interrupt?.SetNeedsReset();
        }
    }

    /// <summary>
    /// The I/O thread busy-waits: serves finished asynchronous requests the disk's queue sees without a system call,
    /// then any queue with new buffers. True when it found anything.
    /// </summary>
    public bool Poll()
    {
        var queues = _queues;
        bool any = false;
        if (queues.Length > 0 && _aio is { CompletionsReady: true } && PollCompletions(queues[0].Queue))
        {
            Notify(queues[0]);
            any = true;
        }
        for (int i = 0; i < queues.Length; i++)
        {
            if (!queues[i].Queue.HasAvailable) continue;
            ProcessQueue(i);
            any = true;
        }
        return any;
    }

    /// <summary>Asynchronous requests are in flight: the I/O thread's next event is likely their completion.</summary>
    public bool AwaitingCompletions => _aio is { InFlight: > 0 };

    private bool PollCompletions(SplitQueue queue)
    {
        var aio = _aio;
        var memory = _memory;
        if (aio is null || memory is null) return false;
        bool any = false;
        int n;
        do
        {
            n = aio.Poll(_completions);
            for (int i = 0; i < n; i++) CompleteAsync(queue, memory, _completions[i]);
            Counters.PolledCompletionsField += n;
            any |= n > 0;
        } while (n == _completions.Length);
        return any;
    }

    /// <summary>The queue's completion eventfd fired: completes every finished request, then notifies once.</summary>
    public void ProcessCompletions()
    {
        var queues = _queues;
        if (queues.Length == 0) return;
        if (ReapCompletions(queues[0].Queue, 0)) Notify(queues[0]);
    }

    private void Notify(VirtioQueue vq)
    {
        if (vq.Queue.NeedsNotification())
        {
            Counters.NotificationsField++;
            _interrupt?.SignalQueue(vq.Index);
        }
    }

    /// <summary>Completes finished asynchronous requests, waiting for at least <paramref name="minimum"/>; true when any was.</summary>
    private bool ReapCompletions(SplitQueue queue, int minimum)
    {
        var aio = _aio;
        var memory = _memory;
        if (aio is null || memory is null) return false;
        bool any = false;
        int n;
        do
        {
            n = aio.Reap(_completions, minimum);
            minimum = 0;
            for (int i = 0; i < n; i++) CompleteAsync(queue, memory, _completions[i]);
            any |= n > 0;
        } while (n == _completions.Length);
        return any;
    }

    private void CompleteAsync(SplitQueue queue, GuestMemory memory, in DiskCompletion c)
    {
        var head = (ushort)c.Token;
        _inFlight[head] = false;
        bool write = _inFlightWrite[head];
        if (write) _inFlightWrites--;
        if (c.Result.IsOk)
        {
            if (write) Counters.WrittenBytesField += (long)_inFlightBytes[head];
            else Counters.ReadBytesField += (long)_inFlightBytes[head];
        }
        uint used = Complete(memory, _inFlightStatus[head], StatusOf(c.Result), _inFlightUsed[head]);
        queue.AddUsed(head, used);
    }

    /// <summary>Queues the current request's vectors to the disk; false when it must be served synchronously.</summary>
    private bool TryDefer(ulong offset, int count, bool write, GuestAddress status, uint used, ulong bytes)
    {
        var aio = _aio;
        ushort head = _head;
        if (aio is null || head >= _inFlight.Length || _inFlight[head]) return false; // a head reused while in flight: a driver bug, served synchronously
        if (!aio.TryEnqueue(offset, _iov.AsSpan(0, count), write, head)) return false;
        _inFlight[head] = true;
        _inFlightWrite[head] = write;
        _inFlightStatus[head] = status;
        _inFlightUsed[head] = used;
        _inFlightBytes[head] = bytes;
        if (write) _inFlightWrites++;
        Counters.AsyncRequestsField++;
        _deferred = true;
        return true;
    }

    /// <summary>Before a FLUSH: submits what is queued and completes every write in flight (a flush covers them).</summary>
    private void WaitForWrites()
    {
        if (_inFlightWrites == 0 || _aio is not { } aio) return;
        Counters.FlushWaitsField++;
        aio.Submit();
        var queue = _queues[0].Queue;
        while (_inFlightWrites > 0 && aio.InFlight > 0)
            if (ReapCompletions(queue, 1)) _completedInline = true;
    }

    /// <summary>Serves one chain and returns the used length (bytes written into device-writable buffers).</summary>
    internal uint Process(in DescriptorChain chain)
    {
        Counters.RequestsField++;
        _head = chain.Head;
        var memory = _memory;
        if (memory is null || !chain.IsValid) return Malformed();

        // Copy the chain once; from here on only the copy is used.
        int n = 0, firstWritable = -1;
        bool tooMany = false;
        ulong readable = 0, writable = 0;
        DescriptorSegment last = default;
        var e = chain.GetEnumerator();
        while (e.MoveNext())
        {
            var s = e.Current;
            last = s;
            if (n < _segments.Length) _segments[n] = s;
            else tooMany = true;
            if (s.Writable)
            {
                if (firstWritable < 0) firstWritable = n;
                writable += s.Length;
            }
            else readable += s.Length;
            n++;
        }
        if (e.Error != VirtqueueError.None || n == 0 || !last.Writable) return Malformed();
        var status = last.Address + (last.Length - 1);
        if (tooMany) return Complete(memory, status, VirtioBlkConstants.StatusIoErr, 1);
        _segmentCount = n;
        _firstWritable = firstWritable;
        ulong dataIn = writable - 1; // device-writable bytes before the status byte

        if (readable < VirtioBlkConstants.HeaderSize) return Complete(memory, status, VirtioBlkConstants.StatusIoErr, 1);
        Span<byte> header = stackalloc byte[VirtioBlkConstants.HeaderSize];
        if (!CopyFromReadable(memory, 0, header)) return Complete(memory, status, VirtioBlkConstants.StatusIoErr, 1);
        uint type = BinaryPrimitives.ReadUInt32LittleEndian(header);
        ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        ulong dataOut = readable - VirtioBlkConstants.HeaderSize;

        switch (type)
        {
            case VirtioBlkConstants.TypeIn:
                if (dataOut != 0) break;
                return Read(memory, status, sector, dataIn);
            case VirtioBlkConstants.TypeOut:
                if (dataIn != 0) break;
                return Write(memory, status, sector, dataOut);
            case VirtioBlkConstants.TypeFlush:
                if (dataOut != 0 || dataIn != 0) break;
                WaitForWrites();
                var flush = _disk.Flush();
                if (flush.IsOk) Counters.FlushesField++;
                return Complete(memory, status, StatusOf(flush), 1);
            case VirtioBlkConstants.TypeGetId:
                if (dataOut != 0) break;
                int idLength = (int)Math.Min(dataIn, (ulong)VirtioBlkConstants.IdBytes);
                if (!CopyToWritable(memory, _serial.AsSpan(0, idLength))) break;
                Counters.GetIdsField++;
                return Complete(memory, status, VirtioBlkConstants.StatusOk, (uint)idLength + 1);
            case VirtioBlkConstants.TypeDiscard:
            case VirtioBlkConstants.TypeWriteZeroes:
                if (_disk.ReadOnly) return Complete(memory, status, VirtioBlkConstants.StatusUnsupp, 1);
                if (dataIn != 0) break;
                return DiscardOrWriteZeroes(memory, status, type == VirtioBlkConstants.TypeDiscard, dataOut);
            default:
                return Complete(memory, status, VirtioBlkConstants.StatusUnsupp, 1);
        }
        return Complete(memory, status, VirtioBlkConstants.StatusIoErr, 1);
    }

    private uint Read(GuestMemory memory, GuestAddress status, ulong sector, ulong length)
    {
        if (!CheckRange(sector, length, out ulong offset)) return Complete(memory, status, VirtioBlkConstants.StatusIoErr, 1);
        int count = BuildVectors(memory, writable: true, skip: 0, length);
        if (count < 0) return Complete(memory, status, VirtioBlkConstants.StatusIoErr, 1);
        if (TryDefer(offset, count, write: false, status, (uint)length + 1, length)) return 0;
        var r = count == 1 ? _disk.Read(offset, _iov[0].AsSpan()) : _disk.ReadVectored(offset, _iov.AsSpan(0, count));
        if (r.IsOk) Counters.ReadBytesField += (long)length;
        // Data may have landed even when the read failed part way: report the whole buffer as written.
        return Complete(memory, status, StatusOf(r), (uint)length + 1);
    }

    private uint Write(GuestMemory memory, GuestAddress status, ulong sector, ulong length)
    {
        if (_disk.ReadOnly || !CheckRange(sector, length, out ulong offset))
            return Complete(memory, status, VirtioBlkConstants.StatusIoErr, 1);
        int count = BuildVectors(memory, writable: false, skip: VirtioBlkConstants.HeaderSize, length);
        if (count < 0) return Complete(memory, status, VirtioBlkConstants.StatusIoErr, 1);
        if (TryDefer(offset, count, write: true, status, 1, length)) return 0;
        var r = count == 1 ? _disk.Write(offset, _iov[0].AsSpan()) : _disk.WriteVectored(offset, _iov.AsSpan(0, count));
        if (r.IsOk) Counters.WrittenBytesField += (long)length;
        return Complete(memory, status, StatusOf(r), 1);
    }

    private uint DiscardOrWriteZeroes(GuestMemory memory, GuestAddress status, bool discard, ulong payload)
    {
        const int rangeSize = VirtioBlkConstants.RangeSize;
        if (payload == 0 || payload % rangeSize != 0 || payload / rangeSize > (ulong)_ranges.Length)
            return Complete(memory, status, VirtioBlkConstants.StatusIoErr, 1);
        int count = (int)(payload / rangeSize);
        Span<byte> raw = stackalloc byte[rangeSize];
        // Validate every range, keeping a private copy, before touching the disk.
        for (int i = 0; i < count; i++)
        {
            if (!CopyFromReadable(memory, (ulong)(VirtioBlkConstants.HeaderSize + rangeSize * i), raw))
                return Complete(memory, status, VirtioBlkConstants.StatusIoErr, 1);
            ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(raw);
            uint sectors = BinaryPrimitives.ReadUInt32LittleEndian(raw[8..]);
            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(raw[12..]);
            if ((flags & ~VirtioBlkConstants.RangeFlagUnmap) != 0 || (discard && flags != 0))
                return Complete(memory, status, VirtioBlkConstants.StatusUnsupp, 1);
            if (sectors > _options.MaxDiscardSectors
                || !CheckRange(sector, (ulong)sectors * VirtioBlkConstants.SectorSize, out ulong offset))
                return Complete(memory, status, VirtioBlkConstants.StatusIoErr, 1);
            _ranges[i] = (offset, (ulong)sectors * VirtioBlkConstants.SectorSize, (flags & VirtioBlkConstants.RangeFlagUnmap) != 0);
        }
        var result = DiskIoResult.Ok;
        for (int i = 0; i < count && result.IsOk; i++)
        {
            var (offset, length, unmap) = _ranges[i];
            result = discard ? _disk.Discard(offset, length) : _disk.WriteZeroes(offset, length, unmap);
        }
        if (result.IsOk)
        {
            if (discard) Counters.DiscardsField++;
            else Counters.WriteZeroesField++;
        }
        return Complete(memory, status, StatusOf(result), 1);
    }

    /// <summary>[sector, sector + length) lies on the disk and length is a sector multiple; no step can overflow.</summary>
    private bool CheckRange(ulong sector, ulong length, out ulong offset)
    {
        offset = 0;
        return length % VirtioBlkConstants.SectorSize == 0
            && DiskBackendExtensions.TrySectorOffset(sector, VirtioBlkConstants.SectorSize, out offset)
            && offset <= _disk.SizeBytes && length <= _disk.SizeBytes - offset;
    }

    /// <summary>
    /// Fills <see cref="_iov"/> with <paramref name="length"/> bytes of the readable (or writable) buffers after the
    /// first <paramref name="skip"/> bytes. Returns the vector count, or -1 when guest memory does not hold them.
    /// </summary>
    private int BuildVectors(GuestMemory memory, bool writable, ulong skip, ulong length)
    {
        int start = writable ? _firstWritable : 0;
        int end = writable ? _segmentCount : (_firstWritable < 0 ? _segmentCount : _firstWritable);
        int count = 0;
        for (int i = start; i < end && length > 0; i++)
        {
            var s = _segments[i];
            if (skip >= s.Length)
            {
                skip -= s.Length;
                continue;
            }
            ulong take = Math.Min(s.Length - skip, length);
            // A device-writable buffer (a disk read fills it) must not be guest ROM.
            if (take > int.MaxValue || !IoVector.TryFromGuest(memory, s.Address + skip, (int)take, deviceWrites: writable, out _iov[count])) return -1;
            count++;
            length -= take;
            skip = 0;
        }
        return length == 0 ? count : -1;
    }

    private bool CopyFromReadable(GuestMemory memory, ulong offset, Span<byte> destination)
    {
        int end = _firstWritable < 0 ? _segmentCount : _firstWritable;
        for (int i = 0; i < end && !destination.IsEmpty; i++)
        {
            var s = _segments[i];
            if (offset >= s.Length)
            {
                offset -= s.Length;
                continue;
            }
            int take = (int)Math.Min(s.Length - offset, (ulong)destination.Length);
            if (!memory.TryGetSpan(s.Address + offset, take, out var span)) return false;
            span.CopyTo(destination);
            destination = destination[take..];
            offset = 0;
        }
        return destination.IsEmpty;
    }

    private bool CopyToWritable(GuestMemory memory, ReadOnlySpan<byte> source)
    {
        for (int i = _firstWritable; i >= 0 && i < _segmentCount && !source.IsEmpty; i++)
        {
            var s = _segments[i];
            int take = (int)Math.Min(s.Length, (ulong)source.Length);
            if (!memory.TryGetSpan(s.Address, take, out var span)) return false;
            source[..take].CopyTo(span);
            source = source[take..];
        }
        return source.IsEmpty;
    }

    private static byte StatusOf(DiskIoResult r) => r.Status switch
    {
        DiskIoStatus.Ok => VirtioBlkConstants.StatusOk,
        DiskIoStatus.Unsupported => VirtioBlkConstants.StatusUnsupp,
        _ => VirtioBlkConstants.StatusIoErr,
    };

    private uint Complete(GuestMemory memory, GuestAddress status, byte value, uint used)
    {
        if (value == VirtioBlkConstants.StatusIoErr) Counters.IoErrorsField++;
        else if (value == VirtioBlkConstants.StatusUnsupp) Counters.UnsupportedField++;
        if (!memory.TryGetSpan(status, 1, out var span)) return 0;
        span[0] = value;
        return used;
    }

    private uint Malformed()
    {
        Counters.MalformedField++;
        return 0;
    }
}
