namespace Csvmm.Devices;

/// <summary>
/// A device on a port-I/O or MMIO bus. It never knows its own address: the bus hands it the offset
/// from the start of the range it was registered at. <paramref name="data"/> is 1, 2, 4 or 8 bytes
/// (little-endian), pointing straight into the vCPU's kvm_run page; implementations must not keep it.
/// </summary>
/// <remarks>
/// Called on vCPU threads, the hot path. What each kind of access may do:
/// <list type="bullet">
/// <item><b>Data path</b> (status and data registers, doorbells, FIFOs, timers — what a guest touches per I/O):
/// no allocation, no logging, no system call that can block, only short uncontended locks. Output goes to a
/// bounded queue that another thread drains (the UART's host side: <see cref="ISerialOutput"/>).</item>
/// <item><b>Control path</b> (a bounded number of times per configuration change: BAR programming, MSI-X
/// table and routing updates, virtio device status / queue enable / reset, firmware-visible resets): may
/// allocate and may make non-blocking ioctls (KVM_SET_GSI_ROUTING, KVM_IOEVENTFD), and may wait for the
/// device's own I/O thread to finish in-flight requests (a virtio reset) — never for the guest or the host's user.</item>
/// <item>Disk requests never run here: virtio-blk serves its queues on its I/O thread, the IDE channel posts its
/// PIO blocks, bus-master transfers and flushes to its own thread and reports the drive busy meanwhile.</item>
/// </list>
/// Device models never throw into the bus for guest mistakes: they count them and answer as hardware would.
/// </remarks>
public interface IBusDevice
{
    /// <summary>Fill <paramref name="data"/> with the value read at <paramref name="offset"/>.</summary>
    void Read(ulong offset, Span<byte> data);

    /// <summary>Accept the value written at <paramref name="offset"/>.</summary>
    void Write(ulong offset, ReadOnlySpan<byte> data);
}

/// <summary>An interrupt line into the interrupt controller (a GSI). One method: set the level.</summary>
public interface IIrqLine
{
    /// <summary>Raise (true) or lower (false) the line. Edge-triggered users call Set(true) then Set(false).</summary>
    void Set(bool level);
}

/// <summary>What a device may ask of the whole machine: platform reset or power-off.</summary>
public interface IVmControl
{
    /// <summary>Reset the platform (i8042 pulse, 0xCF9, ACPI reset register, triple fault).</summary>
    void RequestReset(string reason);

    /// <summary>Power the machine off (ACPI S5).</summary>
    void RequestPowerOff(string reason);
}

/// <summary>Helpers for the little-endian values carried by bus accesses.</summary>
public static class BusData
{
    /// <summary>Zero-extends a 1/2/4/8-byte little-endian access to 64 bits.</summary>
    public static ulong Get(ReadOnlySpan<byte> data) => data.Length switch
    {
        1 => data[0],
        2 => System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(data),
        4 => System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(data),
        8 => System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(data),
        _ => GetSlow(data),
    };

    /// <summary>Stores the low <c>data.Length</c> bytes of <paramref name="value"/> little-endian.</summary>
    public static void Set(Span<byte> data, ulong value)
    {
        switch (data.Length)
        {
            case 1: data[0] = (byte)value; break;
            case 2: System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(data, (ushort)value); break;
            case 4: System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(data, (uint)value); break;
            case 8: System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(data, value); break;
            default:
                for (int i = 0; i < data.Length; i++) data[i] = i < 8 ? (byte)(value >> (8 * i)) : (byte)0;
                break;
        }
    }

    private static ulong GetSlow(ReadOnlySpan<byte> data)
    {
        ulong v = 0;
        for (int i = 0; i < data.Length && i < 8; i++) v |= (ulong)data[i] << (8 * i);
        return v;
    }
}
