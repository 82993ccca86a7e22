namespace Csvmm.Devices.Pci;

/// <summary>
/// PCI configuration mechanism #1 at ports 0xCF8-0xCFF (register as one 8-byte range), plus the PIIX reset control
/// register that shares the range at 0xCF9.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Offset 0-3, 32-bit accesses only: CONFIG_ADDRESS (bit 31 enable, bits 23-16 bus, 15-11 device, 10-8
/// function, 7-2 register). Reserved bits 30-24 and 1-0 read 0.</item>
/// <item>Offset 1, 8-bit: the reset control register (0xCF9). Writing it with bit 2 (RST_CPU) set asks
/// <see cref="IVmControl.RequestReset"/> — with bit 1 (SYS_RST) a hard reset, without it a CPU-only soft reset,
/// which csvmm also treats as a platform reset, as QEMU does. Reads return the last value written.</item>
/// <item>Other 8/16-bit accesses at offsets 0-3 reach no register (reads 0xFF..., writes ignored): this is how Linux
/// tells mechanism #1 from #2.</item>
/// <item>Offset 4-7: CONFIG_DATA; an access of 1, 2 or 4 bytes at offset 4+k reaches register + k of the addressed
/// function. Reads are all-ones when the enable bit is clear, the bus is not 0 or the function is absent.</item>
/// </list>
/// </remarks>
public sealed class PciConfigIo : IBusDevice
{
    /// <summary>Number of ports (0xCF8-0xCFF).</summary>
    public const int PortCount = 8;

    /// <summary>CONFIG_ADDRESS enable bit.</summary>
    public const uint EnableBit = 0x8000_0000;

    private const uint AddressMask = 0x80FF_FFFC;
    private const byte ResetCpu = 0x04, SystemReset = 0x02;
    private const string HardResetReason = "PCI reset control (0xCF9) hard reset";
    private const string SoftResetReason = "PCI reset control (0xCF9) CPU reset";

    private readonly PciBus _bus;
    private readonly IVmControl _control;
    private uint _address;
    private byte _resetControl;

    /// <param name="bus">Bus 0's functions.</param>
    /// <param name="control">Receives reset requests from the reset control register.</param>
    public PciConfigIo(PciBus bus, IVmControl control)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(control);
        _bus = bus;
        _control = control;
    }

    /// <summary>The latched CONFIG_ADDRESS.</summary>
    public uint ConfigAddress => Volatile.Read(ref _address);

    /// <summary>The reset control register's last written value.</summary>
    public byte ResetControl => Volatile.Read(ref _resetControl);

    /// <inheritdoc/>
    public void Read(ulong offset, Span<byte> data)
    {
        if (offset >= 4 && offset < PortCount)
        {
            uint address = Volatile.Read(ref _address);
            if (TryDecode(address, out int device, out int function))
                _bus.ReadConfig(device, function, (int)(address & 0xFC) + (int)(offset - 4), data);
            else
                data.Fill(0xFF);
        }
        else if (offset == 0 && data.Length == 4)
            BusData.Set(data, Volatile.Read(ref _address));
        else if (offset == 1 && data.Length == 1)
            data[0] = Volatile.Read(ref _resetControl);
        else
            data.Fill(0xFF);
    }

    /// <inheritdoc/>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset >= 4 && offset < PortCount)
        {
            uint address = Volatile.Read(ref _address);
            if (TryDecode(address, out int device, out int function))
                _bus.WriteConfig(device, function, (int)(address & 0xFC) + (int)(offset - 4), data);
        }
        else if (offset == 0 && data.Length == 4)
            Volatile.Write(ref _address, (uint)BusData.Get(data) & AddressMask);
        else if (offset == 1 && data.Length == 1)
            WriteResetControl(data[0]);
    }

    private void WriteResetControl(byte value)
    {
        Volatile.Write(ref _resetControl, value);
        if ((value & ResetCpu) != 0)
            _control.RequestReset((value & SystemReset) != 0 ? HardResetReason : SoftResetReason);
    }

    private static bool TryDecode(uint address, out int device, out int function)
    {
        device = (int)(address >> 11) & 0x1F;
        function = (int)(address >> 8) & 0x7;
        return (address & EnableBit) != 0 && ((address >> 16) & 0xFF) == 0;
    }
}
