namespace Csvmm.Virtio;

/// <summary>Split-virtqueue layout constants from virtio 1.2 §2.7.</summary>
public static class Virtq
{
    /// <summary>Largest queue size a split virtqueue may have.</summary>
    public const int MaxQueueSize = 32768;
    /// <summary>Largest number of entries accepted in one indirect table.</summary>
    public const int MaxIndirectEntries = 32768;
    /// <summary>Size of one descriptor (le64 addr, le32 len, le16 flags, le16 next).</summary>
    public const int DescriptorSize = 16;
    /// <summary>Size of one used-ring element (le32 id, le32 len).</summary>
    public const int UsedElementSize = 8;

    /// <summary>The buffer continues via the next field.</summary>
    public const ushort DescFlagNext = 1;
    /// <summary>The buffer is device write-only (otherwise device read-only).</summary>
    public const ushort DescFlagWrite = 2;
    /// <summary>The buffer holds a table of indirect descriptors.</summary>
    public const ushort DescFlagIndirect = 4;

    /// <summary>avail.flags: the driver asks for no used-buffer notifications (ignored with EVENT_IDX).</summary>
    public const ushort AvailFlagNoInterrupt = 1;
    /// <summary>used.flags: the device asks for no available-buffer notifications (ignored with EVENT_IDX).</summary>
    public const ushort UsedFlagNoNotify = 1;

    /// <summary>Bytes of the descriptor table for a queue of <paramref name="size"/> entries.</summary>
    public static ulong DescTableBytes(int size) => (ulong)DescriptorSize * (uint)size;
    /// <summary>Bytes of the available ring including used_event.</summary>
    public static ulong AvailRingBytes(int size) => 6 + 2 * (ulong)(uint)size;
    /// <summary>Bytes of the used ring including avail_event.</summary>
    public static ulong UsedRingBytes(int size) => 6 + (ulong)UsedElementSize * (uint)size;

    /// <summary>
    /// The event-index test of virtio 1.2 §2.7.10: true when <paramref name="eventIdx"/> lies in the window
    /// (<paramref name="oldIdx"/>, <paramref name="newIdx"/>], computed modulo 2^16.
    /// </summary>
    public static bool NeedEvent(ushort eventIdx, ushort newIdx, ushort oldIdx) =>
        (ushort)(newIdx - eventIdx - 1) < (ushort)(newIdx - oldIdx);
}
