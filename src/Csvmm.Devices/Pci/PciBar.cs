namespace Csvmm.Devices.Pci;

/// <summary>What a base address register decodes.</summary>
public enum PciBarKind
{
    /// <summary>No BAR at this index (reads 0, not writable).</summary>
    None,
    /// <summary>32-bit memory space.</summary>
    Memory32,
    /// <summary>64-bit memory space (uses this index and the next).</summary>
    Memory64,
    /// <summary>I/O port space.</summary>
    Io,
}

/// <summary>
/// A snapshot of one BAR: its kind and size as the device declared them, and the base address the guest
/// (or firmware) last programmed. While the guest is sizing the BAR the address reads as the size mask, so a
/// consumer only trusts it when the command register enables the matching decode.
/// </summary>
public readonly record struct PciBar(PciBarKind Kind, ulong Size, ulong Address, bool Prefetchable)
{
    /// <summary>Whether this is a memory BAR (32- or 64-bit).</summary>
    public bool IsMemory => Kind is PciBarKind.Memory32 or PciBarKind.Memory64;
}
