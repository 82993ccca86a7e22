namespace Csvmm.Memory;

/// <summary>One contiguous range of guest-physical memory backed by host memory.</summary>
public sealed class GuestRegion
{
    internal GuestRegion(GuestAddress start, ulong size, nint host, bool readOnly, string name)
    {
        Start = start;
        Size = size;
        HostAddress = host;
        ReadOnly = readOnly;
        Name = name;
    }

    public GuestAddress Start { get; }
    public ulong Size { get; }
    /// <summary>Last byte + 1 (never wraps: regions end at or below 2^64 - 1).</summary>
    public ulong End => Start.Value + Size;
    /// <summary>Host virtual address of the region's first byte (for KVM_SET_USER_MEMORY_REGION).</summary>
    public nint HostAddress { get; }
    /// <summary>Read-only to the guest (ROM): registered with KVM_MEM_READONLY where the host supports it.</summary>
    public bool ReadOnly { get; }
    public string Name { get; }

    public bool Contains(GuestAddress a, ulong length) =>
        a.Value >= Start.Value && length <= Size && a.Value - Start.Value <= Size - length;

    public override string ToString() => $"{Name} [{Start}, 0x{End:x}){(ReadOnly ? " ro" : "")}";
}
