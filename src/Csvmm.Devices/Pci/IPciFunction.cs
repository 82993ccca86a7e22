namespace Csvmm.Devices.Pci;

/// <summary>
/// One PCI function's configuration space (256 bytes, conventional PCI) as the host bridge sees it. Offsets are
/// byte offsets into that space; an access may be 1, 2 or 4 bytes and must be answered in little-endian order.
/// Called on vCPU threads (possibly two at once): no allocation, no logging, only short private locks.
/// </summary>
public interface IPciFunction
{
    /// <summary>The function's configuration space (what the guest reads and writes; saved and loaded as its state).</summary>
    PciConfigSpace Config { get; }

    /// <summary>Fills <paramref name="data"/> with the bytes at <paramref name="offset"/>; bytes past 255 read 0xFF.</summary>
    void ReadConfig(int offset, Span<byte> data);

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>, honouring read-only fields; bytes past 255 are ignored.</summary>
    void WriteConfig(int offset, ReadOnlySpan<byte> data);
}
