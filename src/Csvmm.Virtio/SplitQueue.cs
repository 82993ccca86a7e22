using System.Buffers.Binary;
using System.Numerics;
using Csvmm.Memory;

namespace Csvmm.Virtio;

/// <summary>The guest-chosen configuration of one split virtqueue (what virtio-pci's common config holds).</summary>
/// <param name="Size">Queue size: a power of two, at most 32768.</param>
/// <param name="DescTable">Descriptor table address (16-byte aligned).</param>
/// <param name="AvailRing">Available ring address (2-byte aligned).</param>
/// <param name="UsedRing">Used ring address (4-byte aligned).</param>
/// <param name="EventIdx">True when VIRTIO_F_EVENT_IDX was negotiated.</param>
public readonly record struct SplitQueueConfig(
    ushort Size, GuestAddress DescTable, GuestAddress AvailRing, GuestAddress UsedRing, bool EventIdx);

/// <summary>
/// The device side of a virtio 1.x split virtqueue (virtio 1.2 §2.7). Every value read from the guest is
/// validated; guest mistakes become <see cref="VirtqueueError"/> values, never exceptions. Not thread-safe:
/// one thread (the device's I/O thread) owns a queue.
/// </summary>
public sealed class SplitQueue
{
    private readonly GuestMemory _memory;
    private readonly GuestAddress _desc;
    private readonly GuestAddress _availFlags, _availIdx, _availRing, _usedEvent;
    private readonly GuestAddress _usedIdx, _usedRing, _availEvent;
    private readonly ushort _size;
    private ushort _nextAvail;
    private ushort _nextUsed;
    private ushort _signalledUsed;
    private bool _signalledValid;

    private SplitQueue(GuestMemory memory, in SplitQueueConfig config)
    {
        _memory = memory;
        _size = config.Size;
        EventIdx = config.EventIdx;
        _desc = config.DescTable;
        // Offsets below stay inside ranges validated by TryCreate.
        _availFlags = config.AvailRing;
        _availIdx = config.AvailRing + 2;
        _availRing = config.AvailRing + 4;
        _usedEvent = config.AvailRing + (4 + 2 * (ulong)_size);
        _usedIdx = config.UsedRing + 2;
        _usedRing = config.UsedRing + 4;
        _availEvent = config.UsedRing + (4 + (ulong)Virtq.UsedElementSize * _size);
    }

    /// <summary>
    /// Validates <paramref name="config"/> (size, alignment, every ring inside one guest RAM region, used ring
    /// writable) and creates the queue with indices at zero. Returns the error and a null queue when invalid.
    /// </summary>
    public static VirtqueueError TryCreate(GuestMemory memory, in SplitQueueConfig config, out SplitQueue? queue)
    {
        ArgumentNullException.ThrowIfNull(memory);
        queue = null;
        int size = config.Size;
        if (size == 0 || size > Virtq.MaxQueueSize || !BitOperations.IsPow2(size))
            return VirtqueueError.InvalidQueueSize;
        if (config.DescTable.Value % 16 != 0 || config.AvailRing.Value % 2 != 0 || config.UsedRing.Value % 4 != 0)
            return VirtqueueError.MisalignedRing;
        if (!InRam(memory, config.DescTable, Virtq.DescTableBytes(size), out _)
            || !InRam(memory, config.AvailRing, Virtq.AvailRingBytes(size), out _)
            || !InRam(memory, config.UsedRing, Virtq.UsedRingBytes(size), out var usedRegion))
            return VirtqueueError.RingOutOfRange;
        if (usedRegion!.ReadOnly)
            return VirtqueueError.RingReadOnly;
        queue = new SplitQueue(memory, config);
        return VirtqueueError.None;
    }

    private static bool InRam(GuestMemory memory, GuestAddress start, ulong length, out GuestRegion? region)
    {
        region = start.TryAdd(length, out _) ? memory.FindRegion(start, length) : null;
        return region is not null;
    }

    /// <summary>Queue size.</summary>
    public ushort Size => _size;

    /// <summary>True when VIRTIO_F_EVENT_IDX is in use.</summary>
    public bool EventIdx { get; }

    /// <summary>Index of the next available-ring entry the device will consume (last_avail_idx).</summary>
    public ushort NextAvail => _nextAvail;

    /// <summary>Index the device will publish in used.idx after the next <see cref="AddUsed"/>.</summary>
    public ushort NextUsed => _nextUsed;

    /// <summary>
    /// The error that broke the queue (<see cref="VirtqueueError.AvailIndexTooFar"/> or
    /// <see cref="VirtqueueError.HeadIndexOutOfRange"/>). Once set, nothing more is popped and the device
    /// should set DEVICE_NEEDS_RESET.
    /// </summary>
    public VirtqueueError Error { get; private set; }

    /// <summary>True once <see cref="Error"/> is set.</summary>
    public bool IsBroken => Error != VirtqueueError.None;

    /// <summary>
    /// True when the driver has published buffers not yet popped (false once the queue is broken). Used after
    /// <see cref="SetAvailEvent"/> to close the race with a driver that added a buffer before seeing avail_event.
    /// </summary>
    public bool HasAvailable => !IsBroken && ReadU16(_availIdx) != _nextAvail;

    /// <summary>
    /// Sets the ring indices (and the error that broke the queue, if one had), for restoring a snapshot: both indices
    /// start at zero after <see cref="TryCreate"/>. The next <see cref="NeedsNotification"/> says yes (one interrupt
    /// more than needed at worst, never one too few).
    /// </summary>
    public void RestoreState(ushort nextAvail, ushort nextUsed, VirtqueueError error = VirtqueueError.None)
    {
        _nextAvail = nextAvail;
        _nextUsed = nextUsed;
        _signalledValid = false;
        Error = error;
    }

    /// <summary>
    /// Pops the next available chain. False when the ring is empty or the queue is broken. A popped chain may
    /// still be invalid (<see cref="DescriptorChain.Error"/>): the device fails that request and returns its
    /// head with <see cref="AddUsed"/>.
    /// </summary>
    public bool TryPopAvail(out DescriptorChain chain)
    {
        chain = default;
        if (IsBroken) return false;

        ushort availIdx = ReadU16(_availIdx);
        ushort pending = (ushort)(availIdx - _nextAvail);
        if (pending == 0) return false;
        if (pending > _size)
        {
            Error = VirtqueueError.AvailIndexTooFar;
            return false;
        }
        // Read the ring entry only after seeing idx (virtio 1.2 §2.7.13.3 ordering).
        Interlocked.MemoryBarrier();

        ushort head = ReadU16(_availRing + 2 * (ulong)(_nextAvail & (_size - 1)));
        if (head >= _size)
        {
            Error = VirtqueueError.HeadIndexOutOfRange;
            return false;
        }
        _nextAvail++;
        chain = new DescriptorChain(_memory, _desc, _size, head);
        return true;
    }

    /// <summary>
    /// Publishes a used element for <paramref name="head"/> with <paramref name="length"/> bytes written by the
    /// device, then advances used.idx. Throws only on a device bug (a head not below the queue size).
    /// </summary>
    public void AddUsed(ushort head, uint length)
    {
        if (head >= _size)
            throw new ArgumentOutOfRangeException(nameof(head), head, $"used head must be below the queue size {_size}");
        var element = _memory.GetSpan(_usedRing + (ulong)Virtq.UsedElementSize * (ulong)(_nextUsed & (_size - 1)),
            Virtq.UsedElementSize);
        BinaryPrimitives.WriteUInt32LittleEndian(element, head);
        BinaryPrimitives.WriteUInt32LittleEndian(element[4..], length);
        _nextUsed++;
        // The element must be visible before the index that publishes it.
        Interlocked.MemoryBarrier();
        WriteU16(_usedIdx, _nextUsed);
    }

    /// <summary>
    /// Whether the driver wants a used-buffer notification for what was added since the last call that
    /// returned. With EVENT_IDX: vring_need_event(used_event, used.idx, used.idx at the previous call);
    /// without: true unless avail.flags has VIRTQ_AVAIL_F_NO_INTERRUPT.
    /// </summary>
    public bool NeedsNotification()
    {
        // used.idx must be visible before the driver's suppression fields are read.
        Interlocked.MemoryBarrier();
        if (!EventIdx)
            return (ReadU16(_availFlags) & Virtq.AvailFlagNoInterrupt) == 0;

        ushort newIdx = _nextUsed;
        ushort oldIdx = _signalledUsed;
        bool valid = _signalledValid;
        _signalledUsed = newIdx;
        _signalledValid = true;
        if (!valid) return true;
        return Virtq.NeedEvent(ReadU16(_usedEvent), newIdx, oldIdx);
    }

    /// <summary>
    /// With EVENT_IDX, writes avail_event = <see cref="NextAvail"/> so the driver notifies once it makes the next
    /// buffer available. No effect without EVENT_IDX. Re-check the ring after calling it to close the race.
    /// </summary>
    public void SetAvailEvent()
    {
        if (!EventIdx) return;
        WriteU16(_availEvent, _nextAvail);
        Interlocked.MemoryBarrier();
    }

    private ushort ReadU16(GuestAddress address) =>
        BinaryPrimitives.ReadUInt16LittleEndian(_memory.GetSpan(address, 2));

    private void WriteU16(GuestAddress address, ushort value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(_memory.GetSpan(address, 2), value);
}
