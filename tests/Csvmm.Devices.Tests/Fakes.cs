using Csvmm.Devices;

namespace Csvmm.Devices.Tests;

/// <summary>An interrupt line that records every Set call.</summary>
internal sealed class FakeIrqLine : IIrqLine
{
    private readonly Lock _lock = new();
    public List<bool> Calls { get; } = [];

    public bool Level
    {
        get { lock (_lock) return Calls.Count > 0 && Calls[^1]; }
    }

    public void Set(bool level)
    {
        lock (_lock) Calls.Add(level);
    }
}

/// <summary>Records reset and power-off requests.</summary>
internal sealed class FakeVmControl : IVmControl
{
    public List<string> Resets { get; } = [];
    public List<string> PowerOffs { get; } = [];

    public void RequestReset(string reason)
    {
        lock (Resets) Resets.Add(reason);
    }

    public void RequestPowerOff(string reason)
    {
        lock (PowerOffs) PowerOffs.Add(reason);
    }
}

/// <summary>Collects output bytes.</summary>
internal sealed class RecordingOutput : ISerialOutput
{
    public List<byte> Bytes { get; } = [];

    public void Write(byte value)
    {
        lock (Bytes) Bytes.Add(value);
    }
}

/// <summary>Access helpers for tests.</summary>
internal static class BusDeviceExtensions
{
    public static byte ReadByte(this IBusDevice device, ulong offset)
    {
        Span<byte> b = stackalloc byte[1];
        device.Read(offset, b);
        return b[0];
    }

    public static void WriteByte(this IBusDevice device, ulong offset, byte value) => device.Write(offset, [value]);

    public static ulong ReadValue(this IBusDevice device, ulong offset, int width)
    {
        Span<byte> b = stackalloc byte[width];
        device.Read(offset, b);
        return BusData.Get(b);
    }

    public static void WriteValue(this IBusDevice device, ulong offset, int width, ulong value)
    {
        Span<byte> b = stackalloc byte[width];
        BusData.Set(b, value);
        device.Write(offset, b);
    }
}
