using Csvmm.Acpi.Aml;

namespace Csvmm.Acpi.Tables;

/// <summary>
/// The Differentiated System Description Table (ACPI 6.3 section 5.2.11.1), revision 2 (64-bit integers). Its AML
/// is static and small on purpose: only Name objects, no methods and no loops, because every AML opcode costs a
/// lot when the guest kernel runs under instruction emulation (see host-kvm.md). It declares
/// <code>
/// Name (\_S5, Package () { SLP_TYP, SLP_TYP, 0, 0 })
/// Scope (\_SB) {
///     Device (PCI0) {                       // when a PCI root is configured
///         Name (_HID, EisaId ("PNP0A03")) Name (_UID, 0) Name (_SEG, 0) Name (_BBN, 0)
///         Name (_CRS, ResourceTemplate () { bus 0-255, the I/O windows, IO (0xCF8, 8), the 32-bit MMIO window })
///         Name (_PRT, Package () { Package () { (slot &lt;&lt; 16) | 0xFFFF, pin, 0, GSI }, ... }) // 4 per slot
///     }
///     Device (COM1) {                       // when COM1 is configured
///         Name (_HID, EisaId ("PNP0501")) Name (_UID, 0)
///         Name (_CRS, ResourceTemplate () { IO (port, port, 1, 8) IRQNoFlags () { irq } })
///     }
/// }
/// </code>
/// </summary>
public static class Dsdt
{
    /// <summary>Table revision: 2 makes AML integers 64 bits wide.</summary>
    public const byte Revision = 2;

    /// <summary>The DSDT for <paramref name="config"/>.</summary>
    public static byte[] Build(AcpiConfig config)
    {
        var aml = new AmlWriter(4096);
        aml.Write(SleepState5(config.S5SleepType));
        var devices = new List<IAmlObject>();
        if (config.PciRoot is { } pci) devices.Add(PciRoot(pci));
        if (config.Com1 is { } com1) devices.Add(SerialPort("COM1", com1));
        if (devices.Count > 0) aml.Write(new AmlScope(@"\_SB", devices));
        return SdtHeader.Wrap("DSDT", Revision, aml.WrittenSpan);
    }

    /// <summary>\_S5: the PM1a and PM1b SLP_TYP values for soft-off, then two reserved fields.</summary>
    internal static AmlName SleepState5(byte slpTyp) =>
        new(@"\_S5", new AmlPackage(new AmlInteger(slpTyp), new AmlInteger(slpTyp), AmlInteger.Zero, AmlInteger.Zero));

    /// <summary>
    /// \_SB.PCI0: the host bridge of PCI segment 0, bus 0. It has a _HID and therefore no _ADR: ACPI 6.3 section 6.1
    /// says a device should not have both, and iasl warns when it does.
    /// </summary>
    internal static AmlDevice PciRoot(PciRootConfig pci) =>
        new("PCI0",
            new AmlName("_HID", new AmlEisaId("PNP0A03")),
            new AmlName("_UID", AmlInteger.Zero),
            new AmlName("_SEG", AmlInteger.Zero),
            new AmlName("_BBN", AmlInteger.Zero),
            new AmlName("_CRS", PciRootResources(pci)),
            new AmlName("_PRT", PciRoutingTable(pci)));

    /// <summary>The root bridge's _CRS: bus numbers, the I/O windows, the config ports it consumes, the MMIO window.</summary>
    internal static AmlResourceTemplate PciRootResources(PciRootConfig pci)
    {
        var resources = new List<IAmlResource> { new WordBusNumberDescriptor(0x00, 0xFF) };
        foreach (var w in pci.IoWindows) resources.Add(new WordIoDescriptor(w.First, w.Last));
        resources.Add(new IoDescriptor(pci.ConfigPort, pci.ConfigPort, 1, 8));
        resources.Add(new DWordMemoryDescriptor((uint)pci.MmioStart.Value, (uint)(pci.MmioEnd.Value - 1)));
        return new AmlResourceTemplate(resources);
    }

    /// <summary>
    /// The _PRT as a literal package: for every slot and pin (0-3 = INTA-INTD) an entry
    /// { (slot &lt;&lt; 16) | 0xFFFF, pin, 0, GSI }. A source of 0 means the last field is a GSI (level, active low).
    /// </summary>
    internal static AmlPackage PciRoutingTable(PciRootConfig pci)
    {
        var entries = new List<IAmlObject>(pci.SlotCount * 4);
        for (int slot = 0; slot < pci.SlotCount; slot++)
        {
            for (int pin = 0; pin < 4; pin++)
            {
                entries.Add(new AmlPackage(
                    new AmlInteger(((ulong)slot << 16) | 0xFFFF),
                    new AmlInteger((ulong)pin),
                    AmlInteger.Zero,
                    new AmlInteger(pci.Gsi(slot, pin))));
            }
        }
        return new AmlPackage(entries);
    }

    /// <summary>A PNP0501 (16550A-compatible) UART with its 8 ports and its ISA IRQ.</summary>
    internal static AmlDevice SerialPort(string name, LegacySerialPort port) =>
        new(name,
            new AmlName("_HID", new AmlEisaId("PNP0501")),
            new AmlName("_UID", AmlInteger.Zero),
            new AmlName("_CRS", new AmlResourceTemplate(
                new IoDescriptor(port.Port, port.Port, 1, 8),
                new IrqNoFlagsDescriptor(port.Irq))));
}
