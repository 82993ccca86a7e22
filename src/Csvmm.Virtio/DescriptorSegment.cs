using Csvmm.Memory;

namespace Csvmm.Virtio;

/// <summary>One validated buffer of a descriptor chain: inside a single guest RAM region, never empty.</summary>
/// <param name="Address">Guest-physical start of the buffer.</param>
/// <param name="Length">Length in bytes (non-zero).</param>
/// <param name="Writable">True for a device-writable buffer, false for a device-readable one.</param>
public readonly record struct DescriptorSegment(GuestAddress Address, uint Length, bool Writable)
{
    /// <summary>
    /// The host view of the buffer. False when the buffer is longer than a span can be (2^31 - 1) or when the
    /// memory no longer holds it; callers then fail the request.
    /// </summary>
    public bool TryGetSpan(GuestMemory memory, out Span<byte> span)
    {
        if (Length > int.MaxValue)
        {
            span = default;
            return false;
        }
        return memory.TryGetSpan(Address, (int)Length, out span);
    }
}
