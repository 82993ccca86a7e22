namespace Csvmm.Virtio;

/// <summary>
/// What is wrong with a guest-supplied virtqueue configuration, ring or descriptor chain. A chain error fails
/// that one request; a queue error (see <see cref="SplitQueue.Error"/>) breaks the queue and the device should
/// set DEVICE_NEEDS_RESET.
/// </summary>
public enum VirtqueueError : byte
{
    /// <summary>No error.</summary>
    None = 0,

    // Queue configuration (SplitQueue.TryCreate).
    /// <summary>Queue size is zero, not a power of two, or above 32768.</summary>
    InvalidQueueSize,
    /// <summary>A ring address is not aligned as virtio 1.x requires (desc 16, avail 2, used 4).</summary>
    MisalignedRing,
    /// <summary>A ring does not lie entirely inside one guest RAM region (or wraps the address space).</summary>
    RingOutOfRange,
    /// <summary>The used ring lies in a read-only region.</summary>
    RingReadOnly,

    // Ring state (breaks the queue).
    /// <summary>avail.idx is more than the queue size ahead of the device's last seen index.</summary>
    AvailIndexTooFar,
    /// <summary>The head index in the available ring is not below the queue size.</summary>
    HeadIndexOutOfRange,

    // Descriptor chain (fails the request).
    /// <summary>A next index is not below the size of the table it indexes.</summary>
    DescriptorIndexOutOfRange,
    /// <summary>More descriptors than the queue size (or indirect table length): a loop or an over-long chain.</summary>
    ChainTooLong,
    /// <summary>A descriptor has length zero.</summary>
    ZeroLengthBuffer,
    /// <summary>addr + len overflows 64 bits.</summary>
    AddressOverflow,
    /// <summary>A buffer is not entirely inside one guest RAM region.</summary>
    BufferOutOfRange,
    /// <summary>A device-writable buffer lies in a read-only region.</summary>
    WritableBufferReadOnly,
    /// <summary>A device-readable descriptor follows a device-writable one.</summary>
    ReadableAfterWritable,
    /// <summary>An indirect table contains a descriptor with VIRTQ_DESC_F_INDIRECT.</summary>
    NestedIndirect,
    /// <summary>A descriptor has both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT.</summary>
    IndirectWithNext,
    /// <summary>An indirect table length is zero, not a multiple of 16, or holds more than 32768 entries.</summary>
    BadIndirectLength,
    /// <summary>An indirect table is not entirely inside one guest RAM region.</summary>
    IndirectTableOutOfRange,
    /// <summary>The sum of the buffer lengths exceeds 2^32 - 1.</summary>
    TotalLengthOverflow,
}
