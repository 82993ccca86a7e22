namespace Csvmm.Devices.Pci;

/// <summary>
/// A PCI function with BARs that decode guest accesses. The machine's BAR router (one range covering the PCI
/// MMIO window, one covering the PCI I/O window, both on the frozen buses) looks up which BAR of which function
/// currently claims an address — from the BAR registers and the command register's decode bits, as the guest
/// last programmed them — and forwards the access with the offset from that BAR's base. BARs may move at run time
/// (firmware or the guest reprogramming them); the function never learns its addresses.
/// </summary>
public interface IPciBarFunction : IPciFunction
{
    /// <summary>The device behind BAR <paramref name="bar"/> (0-5), or null when that BAR decodes nothing.</summary>
    IBusDevice? GetBarDevice(int bar);
}
