using Csvmm.Devices;
using Csvmm.Devices.Pci;

namespace Csvmm.Ide;

/// <summary>
/// The IDE function of the PIIX3 south bridge (Intel 82371SB, 8086:7010; function 1 of the multi-function device
/// whose function 0 is <see cref="Piix3IsaBridge"/>). Both channels run in legacy (compatibility) mode: the task-file
/// ports and IRQs are fixed (<see cref="PrimaryCommandPort"/> etc.) and the machine registers each channel's
/// <see cref="IdeChannel.CommandBlock"/> / <see cref="IdeChannel.ControlBlock"/> there itself; BAR0-3 do not exist.
/// BAR4 (BMIBA, 16 I/O ports) holds the bus-master registers, primary at +0, secondary at +8 (<see cref="GetBarDevice"/>).
/// </summary>
/// <remarks>
/// <para>Configuration space, as the 82371SB datasheet gives it: command 0x0000 (only I/O space enable and bus
/// master enable writable), status 0x0280, class 0x010180 (mass storage, IDE, bus-master capable, both channels in
/// compatibility mode and not switchable), revision 0, header type 0, master latency timer bits 7:4 writable,
/// BMIBA 0x00000001 with address bits 15:4 writable, IDETIM 0x40/0x42 (0x0000, bits 11:10 reserved) and SIDETIM 0x44
/// (0x00) writable; interrupt pin 0 (legacy mode interrupts on ISA IRQ 14/15); everything else reads as stored and is
/// read-only, including the cache line size and interrupt line bytes, which this function does not implement.</para>
/// <para>The timing registers are storage only; IDETIM's IDE Decode Enable bit (15) does not gate the legacy ports
/// (as in QEMU), but guests read it: Linux's ata_piix ignores a channel whose bit is clear. Firmware (SeaBIOS) sets it;
/// for a directly booted kernel the machine calls <see cref="EnableLegacyDecode"/>, as it assigns BARs.</para>
/// <para>The command register's Bus Master Enable bit gates the channels' DMA: a transfer started while it is clear
/// stalls (the bus master never gets the bus) and runs when the guest sets it.</para>
/// </remarks>
public sealed class PiixIde : IPciBarFunction
{
    /// <summary>PIIX3 IDE device ID (82371SB function 1).</summary>
    public const ushort DeviceId = 0x7010;
    /// <summary>Class code: mass storage (0x01), IDE (0x01), programming interface 0x80 (bus master, legacy channels).</summary>
    public const uint ClassCode = 0x01_01_80;

    /// <summary>Primary channel command block base (8 ports).</summary>
    public const ushort PrimaryCommandPort = 0x1F0;
    /// <summary>Primary channel control block (alternate status / device control, 1 port).</summary>
    public const ushort PrimaryControlPort = 0x3F6;
    /// <summary>Primary channel ISA IRQ.</summary>
    public const int PrimaryIrq = 14;
    /// <summary>Secondary channel command block base (8 ports).</summary>
    public const ushort SecondaryCommandPort = 0x170;
    /// <summary>Secondary channel control block (1 port).</summary>
    public const ushort SecondaryControlPort = 0x376;
    /// <summary>Secondary channel ISA IRQ.</summary>
    public const int SecondaryIrq = 15;
    /// <summary>Ports in a command block.</summary>
    public const int CommandBlockLength = 8;
    /// <summary>Ports in a control block.</summary>
    public const int ControlBlockLength = 1;

    /// <summary>The BAR holding the bus-master registers (BMIBA at 0x20).</summary>
    public const int BusMasterBar = 4;
    /// <summary>Ports decoded by <see cref="BusMasterBar"/>.</summary>
    public const uint BusMasterBarSize = 16;
    /// <summary>Offset of the secondary channel's bus-master registers inside the BAR.</summary>
    public const int SecondaryBusMasterOffset = 8;

    /// <summary>IDE timing register, primary channel (16 bits).</summary>
    public const int IdetimPrimaryOffset = 0x40;
    /// <summary>IDE timing register, secondary channel (16 bits).</summary>
    public const int IdetimSecondaryOffset = 0x42;
    /// <summary>Slave IDE timing register (8 bits).</summary>
    public const int SidetimOffset = 0x44;
    /// <summary>IDETIM bit 15: IDE Decode Enable for the channel.</summary>
    public const ushort IdetimDecodeEnable = 0x8000;

    private const ushort ResetStatus = 0x0280; // fast back-to-back capable, DEVSEL timing medium
    private const ushort IdetimWritable = 0xF3FF; // bits 11:10 reserved
    private const byte MasterLatencyWritable = 0xF0;
    // The datasheet reserves bits 31:16, but every BIOS sizes I/O BARs as 32-bit registers (SeaBIOS computes the size
    // as ~(value & ~3) + 1, so 0x0000FFF1 would mean a 4 GiB window): like QEMU, all address bits above the size are writable.
    private const uint BmibaWritable = 0xFFFF_FFF0;
    private const int BmibaOffset = PciConfigSpace.Bar0Offset + 4 * BusMasterBar;

    private readonly Lock _configLock = new();
    private readonly BusMasterRegisters _busMaster;

    /// <summary>
    /// Wraps the two legacy channels. The caller builds each <see cref="IdeChannel"/> with its drives, its IRQ line
    /// (<see cref="PrimaryIrq"/> / <see cref="SecondaryIrq"/>) and guest memory for DMA (a channel built without it
    /// has no bus master: its half of BAR4 reads 0xFF), and registers the channels' blocks on the port bus.
    /// </summary>
    /// <param name="primary">The primary channel, or null when nothing is attached to it.</param>
    /// <param name="secondary">The secondary channel, or null.</param>
    public PiixIde(IdeChannel? primary, IdeChannel? secondary)
    {
        if (primary is not null && ReferenceEquals(primary, secondary))
            throw new ArgumentException("the same IdeChannel cannot be both primary and secondary", nameof(secondary));
        Primary = primary;
        Secondary = secondary;
        _busMaster = new BusMasterRegisters(primary?.BusMaster, secondary?.BusMaster);

        Config = new PciConfigSpace(PciHostBridge.VendorIntel, DeviceId, ClassCode, revision: 0x00);
        Config.SetWritableBits(PciConfigSpace.CommandOffset, 2, PciConfigSpace.CommandIoSpace | PciConfigSpace.CommandBusMaster);
        Config.SetWritableBits(PciConfigSpace.CacheLineSizeOffset, 1, 0);
        Config.SetWritableBits(PciConfigSpace.LatencyTimerOffset, 1, MasterLatencyWritable);
        Config.SetWritableBits(PciConfigSpace.InterruptLineOffset, 1, 0);
        Config.AddIoBar(BusMasterBar, BusMasterBarSize);
        Config.SetWritableBits(BmibaOffset, 4, BmibaWritable);
        Config.SetWritableBits(IdetimPrimaryOffset, 2, IdetimWritable);
        Config.SetWritableBits(IdetimSecondaryOffset, 2, IdetimWritable);
        Config.SetWritableBits(SidetimOffset, 1, 0xFF);
        ResetConfig();
    }

    /// <summary>The primary channel (0x1F0 / 0x3F6, IRQ 14), or null.</summary>
    public IdeChannel? Primary { get; }

    /// <summary>The secondary channel (0x170 / 0x376, IRQ 15), or null.</summary>
    public IdeChannel? Secondary { get; }

    /// <inheritdoc/>
    public PciConfigSpace Config { get; }

    /// <summary>Whether the command register lets the function master the bus (DMA runs only then).</summary>
    public bool BusMasterEnabled => (Config.Command & PciConfigSpace.CommandBusMaster) != 0;

    /// <summary>The bus-master registers of both channels for BAR 4; null for every other BAR.</summary>
    public IBusDevice? GetBarDevice(int bar) => bar == BusMasterBar ? _busMaster : null;

    /// <inheritdoc/>
    public void ReadConfig(int offset, Span<byte> data) => Config.Read(offset, data);

    /// <inheritdoc/>
    public void WriteConfig(int offset, ReadOnlySpan<byte> data)
    {
        lock (_configLock)
        {
            Config.Write(offset, data);
            long end = (long)offset + data.Length;
            if (offset < PciConfigSpace.CommandOffset + 2 && end > PciConfigSpace.CommandOffset) UpdateBusMasterGate();
        }
    }

    /// <summary>
    /// Sets IDE Decode Enable in both IDETIM registers, as firmware does (SeaBIOS writes 0x8000 to 0x40 and 0x42).
    /// For a kernel booted without firmware; the other timing bits are left alone.
    /// </summary>
    public void EnableLegacyDecode()
    {
        lock (_configLock)
        {
            Config.SetWord(IdetimPrimaryOffset, (ushort)(Config.ReadWord(IdetimPrimaryOffset) | IdetimDecodeEnable));
            Config.SetWord(IdetimSecondaryOffset, (ushort)(Config.ReadWord(IdetimSecondaryOffset) | IdetimDecodeEnable));
        }
    }

    /// <summary>
    /// Platform reset: both channels get a hardware reset (drives to power-on settings, bus-master command, status
    /// and PRD address cleared) and the configuration registers return to their reset values (command 0, so the BAR
    /// stops decoding and DMA is gated off; BMIBA 0x00000001; timing registers 0).
    /// </summary>
    public void Reset()
    {
        lock (_configLock)
        {
            ResetConfig();
            Primary?.Reset();
            Secondary?.Reset();
        }
    }

    private void ResetConfig()
    {
        Config.SetWord(PciConfigSpace.CommandOffset, 0);
        Config.SetWord(PciConfigSpace.StatusOffset, ResetStatus);
        Config.SetByte(PciConfigSpace.LatencyTimerOffset, 0);
        Config.SetDword(BmibaOffset, 0x0000_0001);
        Config.SetWord(IdetimPrimaryOffset, 0);
        Config.SetWord(IdetimSecondaryOffset, 0);
        Config.SetByte(SidetimOffset, 0);
        UpdateBusMasterGate();
    }

    private void UpdateBusMasterGate()
    {
        bool enabled = BusMasterEnabled;
        if (Primary is not null) Primary.BusMasterEnabled = enabled;
        if (Secondary is not null) Secondary.BusMasterEnabled = enabled;
    }

    /// <summary>BAR 4: offsets 0-7 to the primary channel's bus master, 8-15 to the secondary's; missing ones float.</summary>
    private sealed class BusMasterRegisters(IBusDevice? primary, IBusDevice? secondary) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data)
        {
            // An access straddling the two halves (a guest mistake) is split; bytes past the BAR read all-ones.
            while (data.Length > 0)
            {
                int n = ChunkLength(offset, data.Length);
                Span<byte> part = data[..n];
                if (Target(offset) is { } device) device.Read(offset % SecondaryBusMasterOffset, part);
                else part.Fill(0xFF);
                offset += (ulong)n;
                data = data[n..];
            }
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            while (data.Length > 0)
            {
                int n = ChunkLength(offset, data.Length);
                Target(offset)?.Write(offset % SecondaryBusMasterOffset, data[..n]);
                offset += (ulong)n;
                data = data[n..];
            }
        }

        private IBusDevice? Target(ulong offset) => offset switch
        {
            < SecondaryBusMasterOffset => primary,
            < BusMasterBarSize => secondary,
            _ => null,
        };

        private static int ChunkLength(ulong offset, int length)
        {
            if (offset >= BusMasterBarSize) return length;
            ulong toBoundary = SecondaryBusMasterOffset - offset % SecondaryBusMasterOffset;
            return (int)Math.Min((ulong)length, toBoundary);
        }
    }
}
