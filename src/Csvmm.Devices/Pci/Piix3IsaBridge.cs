namespace Csvmm.Devices.Pci;

/// <summary>
/// Function 0 of the PIIX3 south bridge, the PCI-to-ISA bridge (8086:7000, class 0x060100, multi-function header so
/// firmware and Linux look for the IDE function at .1). It stores the PIRQA-D route registers 0x60-0x63 (reset
/// value 0x80, routing disabled) that SeaBIOS programs and Linux's PCI IRQ router reads; they have no effect of their
/// own, since the machine's interrupt routing is fixed (and the ELCR at 0x4D0/0x4D1 lives in KVM's PIC).
/// </summary>
public sealed class Piix3IsaBridge : IPciFunction
{
    /// <summary>PIIX3 ISA bridge device ID.</summary>
    public const ushort DeviceId = 0x7000;
    /// <summary>First PIRQ route control register (PIRQA); PIRQB-D follow.</summary>
    public const int PirqRouteOffset = 0x60;
    /// <summary>Value of a PIRQ route register at reset: bit 7 = routing disabled.</summary>
    public const byte PirqRouteDisabled = 0x80;

    /// <summary>An ISA bridge with its power-on register values (command 0x0007, PIRQs disabled).</summary>
    public Piix3IsaBridge()
    {
        Config = new PciConfigSpace(PciHostBridge.VendorIntel, DeviceId, classCode: 0x06_01_00, revision: 0x00,
            headerType: PciConfigSpace.HeaderTypeMultiFunction);
        Config.SetWord(PciConfigSpace.CommandOffset, PciConfigSpace.CommandIoSpace | PciConfigSpace.CommandMemorySpace
            | PciConfigSpace.CommandBusMaster);
        Config.SetWord(PciConfigSpace.StatusOffset, 0x0200); // DEVSEL timing: medium
        for (int i = 0; i < 4; i++)
        {
            Config.SetByte(PirqRouteOffset + i, PirqRouteDisabled);
            Config.SetWritableBits(PirqRouteOffset + i, 1, 0x8F); // bit 7 disable, bits 3-0 IRQ number
        }
    }

    /// <summary>The bridge's configuration space.</summary>
    public PciConfigSpace Config { get; }

    /// <summary>The IRQ a PIRQ line (0-3 = A-D) is routed to, or null when routing is disabled.</summary>
    public int? PirqRoute(int pirq)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)pirq, 3u, nameof(pirq));
        byte value = Config.ReadByte(PirqRouteOffset + pirq);
        return (value & PirqRouteDisabled) != 0 ? null : value & 0x0F;
    }

    /// <inheritdoc/>
    public void ReadConfig(int offset, Span<byte> data) => Config.Read(offset, data);

    /// <inheritdoc/>
    public void WriteConfig(int offset, ReadOnlySpan<byte> data) => Config.Write(offset, data);
}
