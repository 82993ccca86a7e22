namespace Csvmm.Devices.Legacy;

/// <summary>
/// QEMU's "debugcon" at port 0x402, where SeaBIOS (and OVMF) print their debug log: each byte written goes to an
/// <see cref="ISerialOutput"/>; reads return 0xE9, the value QEMU's debugcon reads back so firmware can detect it.
/// Accesses wider than a byte output only their low byte, as QEMU does.
/// </summary>
public sealed class FirmwareDebugPort : IBusDevice
{
    /// <summary>What a read of the port returns.</summary>
    public const byte ReadbackValue = 0xE9;

    private readonly ISerialOutput _output;
    private long _bytesWritten;

    /// <param name="output">Receives the firmware's debug bytes (thread-safe, like every sink).</param>
    public FirmwareDebugPort(ISerialOutput output)
    {
        ArgumentNullException.ThrowIfNull(output);
        _output = output;
    }

    /// <summary>Bytes the firmware wrote.</summary>
    public long BytesWritten => Volatile.Read(ref _bytesWritten);

    /// <inheritdoc/>
    public void Read(ulong offset, Span<byte> data)
    {
        data.Fill(0);
        if (!data.IsEmpty && offset == 0) data[0] = ReadbackValue;
    }

    /// <inheritdoc/>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty || offset != 0) return;
        _output.Write(data[0]);
        Interlocked.Increment(ref _bytesWritten);
    }
}
