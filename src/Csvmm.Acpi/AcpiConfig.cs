using Csvmm.Memory;

namespace Csvmm.Acpi;

/// <summary>
/// What the ACPI tables describe: the platform's CPUs, interrupt controllers, fixed-hardware PM registers, reset
/// register, S5 sleep type and (optionally) a COM1 port and a PCI root bridge. The ACPI layer knows no platform
/// addresses of its own; the machine fills this in from its layout.
/// </summary>
public sealed record AcpiConfig
{
    /// <summary>Largest supported vCPU count: APIC IDs 0..N-1 and an I/O APIC ID of N must stay below 0xFF (broadcast).</summary>
    public const int MaxCpuCount = 254;

    /// <summary>Number of vCPUs; the MADT gets one enabled Local APIC entry per vCPU, APIC ID = vCPU index.</summary>
    public required int CpuCount { get; init; }

    /// <summary>Physical address of the Local APICs (normally 0xFEE00000).</summary>
    public required GuestAddress LocalApicAddress { get; init; }

    /// <summary>Physical address of the I/O APIC (normally 0xFEC00000); its GSI base is 0.</summary>
    public required GuestAddress IoApicAddress { get; init; }

    /// <summary>
    /// I/O APIC ID in the MADT; csvmm uses <see cref="CpuCount"/> so it differs from every Local APIC ID (x86-64 Linux
    /// does not compare it with the I/O APIC's ID register).
    /// </summary>
    public required byte IoApicId { get; init; }

    /// <summary>Port of the 4-byte PM1a event block (PM1a_STS, PM1a_EN).</summary>
    public required ushort Pm1aEventBlock { get; init; }

    /// <summary>Port of the 2-byte PM1a control block (SCI_EN, SLP_TYP, SLP_EN).</summary>
    public required ushort Pm1aControlBlock { get; init; }

    /// <summary>Port of the 4-byte ACPI PM timer (24-bit, 3.579545 MHz).</summary>
    public required ushort PmTimerBlock { get; init; }

    /// <summary>ISA IRQ of the SCI (normally 9); the MADT routes it level-triggered, active high, to the same GSI.</summary>
    public required byte SciIrq { get; init; }

    /// <summary>SLP_TYP value the OS writes to PM1a_CNT to enter S5 (soft off); 3 bits.</summary>
    public required byte S5SleepType { get; init; }

    /// <summary>I/O port of the FADT reset register (a byte write of <see cref="ResetValue"/> resets the machine).</summary>
    public ushort ResetPort { get; init; } = 0xCF9;

    /// <summary>Value written to <see cref="ResetPort"/> to reset (0x06: PIIX "full reset | reset CPU").</summary>
    public byte ResetValue { get; init; } = 0x06;

    /// <summary>COM1, described in the DSDT so the OS's PnP layer knows it; null leaves it out.</summary>
    public LegacySerialPort? Com1 { get; init; }

    /// <summary>The PCI root bridge \_SB.PCI0, described in the DSDT; null leaves it out.</summary>
    public PciRootConfig? PciRoot { get; init; }

    /// <summary>Throws <see cref="AcpiException"/> when a value cannot be described by the tables.</summary>
    public void Validate()
    {
        if (CpuCount is < 1 or > MaxCpuCount)
            throw new AcpiException($"ACPI: vCPU count {CpuCount} is outside 1..{MaxCpuCount}");
        if (IoApicId == 0xFF)
            throw new AcpiException("ACPI: I/O APIC ID 0xFF is the broadcast ID");
        Check32Bit(LocalApicAddress, "Local APIC");
        Check32Bit(IoApicAddress, "I/O APIC");
        CheckPorts(Pm1aEventBlock, 4, "PM1a event block");
        CheckPorts(Pm1aControlBlock, 2, "PM1a control block");
        CheckPorts(PmTimerBlock, 4, "PM timer");
        CheckPorts(ResetPort, 1, "reset register");
        if (SciIrq >= 16)
            throw new AcpiException($"ACPI: SCI IRQ {SciIrq} is not an ISA IRQ (0..15)");
        if (S5SleepType > 7)
            throw new AcpiException($"ACPI: S5 SLP_TYP {S5SleepType} does not fit the 3-bit field");
        Com1?.Validate();
        PciRoot?.Validate();
    }

    private static void Check32Bit(GuestAddress address, string what)
    {
        if (address.Value > uint.MaxValue)
            throw new AcpiException($"ACPI: {what} address {address} is above 4 GiB");
    }

    private static void CheckPorts(ushort port, int length, string what)
    {
        if (port == 0 || port + length > 0x10000)
            throw new AcpiException($"ACPI: {what} at port 0x{port:x} (+{length}) is not a valid I/O range");
    }
}

/// <summary>A legacy 16550 UART described in the DSDT as a PNP0501 device.</summary>
/// <param name="Port">First of its 8 I/O ports (0x3F8 for COM1).</param>
/// <param name="Irq">Its ISA IRQ (4 for COM1).</param>
public sealed record LegacySerialPort(ushort Port, byte Irq)
{
    /// <summary>Throws <see cref="AcpiException"/> when the port range or IRQ is impossible.</summary>
    public void Validate()
    {
        if (Port + 8 > 0x10000)
            throw new AcpiException($"ACPI: serial port at 0x{Port:x} runs past port 0xFFFF");
        if (Irq >= 16)
            throw new AcpiException($"ACPI: serial port IRQ {Irq} is not an ISA IRQ (0..15)");
    }
}

/// <summary>An inclusive range of I/O ports [<paramref name="First"/>, <paramref name="Last"/>].</summary>
public readonly record struct IoPortRange(ushort First, ushort Last)
{
    /// <summary>Number of ports in the range.</summary>
    public int Length => Last - First + 1;

    /// <inheritdoc/>
    public override string ToString() => $"[0x{First:x}, 0x{Last:x}]";
}

/// <summary>
/// The PCI root bridge (\_SB.PCI0, PNP0A03, segment 0, bus 0): the windows its _CRS hands to PCI devices and the
/// fixed interrupt routing its _PRT declares, one entry per (slot, pin).
/// </summary>
public sealed record PciRootConfig
{
    /// <summary>PCI device numbers are 5 bits.</summary>
    public const int MaxSlots = 32;

    /// <summary>The I/O windows a PC root bridge forwards: everything but the configuration ports 0xCF8-0xCFF.</summary>
    public static IReadOnlyList<IoPortRange> StandardIoWindows { get; } = [new(0x0000, 0x0CF7), new(0x0D00, 0xFFFF)];

    /// <summary>
    /// csvmm's default routing: GSI 16 + ((slot + pin) % 4), pin 0 = INTA. KVM's I/O APIC has 24 pins; 0-15 are ISA,
    /// so 16-19 are free for PCI, and the swizzle spreads neighbouring slots over the four lines. The lines are
    /// level-triggered and active low (the _PRT default for a GSI).
    /// </summary>
    public static uint DefaultGsi(int slot, int pin) => 16 + (uint)((slot + pin) % 4);

    /// <summary>First address of the 32-bit MMIO window for BARs.</summary>
    public required GuestAddress MmioStart { get; init; }

    /// <summary>First address after the 32-bit MMIO window (at most 4 GiB).</summary>
    public required GuestAddress MmioEnd { get; init; }

    /// <summary>Number of PCI slots (device numbers 0..SlotCount-1) that get _PRT entries; 1..32.</summary>
    public required int SlotCount { get; init; }

    /// <summary>I/O windows in the _CRS; <see cref="StandardIoWindows"/> unless told otherwise.</summary>
    public IReadOnlyList<IoPortRange> IoWindows { get; init; } = StandardIoWindows;

    /// <summary>First of the 8 configuration-mechanism-1 ports (0xCF8), consumed by the bridge itself.</summary>
    public ushort ConfigPort { get; init; } = 0xCF8;

    /// <summary>GSI for (slot, pin), pin 0..3 = INTA..INTD; <see cref="DefaultGsi"/> unless told otherwise.</summary>
    public Func<int, int, uint> Gsi { get; init; } = DefaultGsi;

    /// <summary>Throws <see cref="AcpiException"/> when a window or the slot count cannot be described.</summary>
    public void Validate()
    {
        if (SlotCount is < 1 or > MaxSlots)
            throw new AcpiException($"ACPI: PCI slot count {SlotCount} is outside 1..{MaxSlots}");
        if (MmioStart >= MmioEnd || MmioEnd.Value > 0x1_0000_0000)
            throw new AcpiException($"ACPI: PCI MMIO window [{MmioStart}, {MmioEnd}) is empty or not below 4 GiB");
        if (IoWindows.Count == 0)
            throw new AcpiException("ACPI: PCI root bridge has no I/O window");
        foreach (var w in IoWindows)
            if (w.First > w.Last)
                throw new AcpiException($"ACPI: PCI I/O window {w} ends before it starts");
        if (ConfigPort + 8 > 0x10000)
            throw new AcpiException($"ACPI: PCI configuration ports at 0x{ConfigPort:x} run past port 0xFFFF");
    }
}
