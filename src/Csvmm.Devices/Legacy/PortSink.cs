namespace Csvmm.Devices.Legacy;

/// <summary>
/// A stand-in for ports that guests probe but csvmm does not emulate: the POST-code port 0x80, the delay port 0xED,
/// absent COM2-4 (reads of 0xFF make Linux's 8250 probe decide "no UART"), DMA page registers and the like.
/// Every byte read returns a fixed value; writes are ignored except that the last byte written is remembered
/// (the POST code). Lock-free: counters use interlocked increments.
/// </summary>
public sealed class PortSink : IBusDevice
{
    private readonly byte _readValue;
    private long _reads;
    private long _writes;
    private int _lastWritten = -1;

    /// <param name="readValue">What every byte of every read returns (0xFF for "nothing here").</param>
    public PortSink(byte readValue) => _readValue = readValue;

    /// <summary>The value every read returns.</summary>
    public byte ReadValue => _readValue;

    /// <summary>Read accesses so far.</summary>
    public long Reads => Volatile.Read(ref _reads);

    /// <summary>Write accesses so far.</summary>
    public long Writes => Volatile.Read(ref _writes);

    /// <summary>The first byte of the last write (e.g. the last POST code), or null if nothing was written.</summary>
    public byte? LastWritten
    {
        get
        {
            int v = Volatile.Read(ref _lastWritten);
            return v < 0 ? null : (byte)v;
        }
    }

    /// <inheritdoc/>
    public void Read(ulong offset, Span<byte> data)
    {
        data.Fill(_readValue);
        Interlocked.Increment(ref _reads);
    }

    /// <inheritdoc/>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (!data.IsEmpty) Volatile.Write(ref _lastWritten, data[0]);
        Interlocked.Increment(ref _writes);
    }
}
