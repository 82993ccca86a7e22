namespace Csvmm.Devices;

/// <summary>
/// Where a guest-facing character device (the 16550's transmitter, the firmware debug port) sends its bytes.
/// Called on vCPU threads, possibly from two devices at once when they share one sink: implementations must be
/// thread-safe, must not block for long (buffer, then write outside the caller's path) and must not throw.
/// </summary>
public interface ISerialOutput
{
    /// <summary>Accepts one byte written by the guest.</summary>
    void Write(byte value);
}
