using Csvmm.Devices;

namespace Csvmm.Machine.Tests;

/// <summary>One bus access as a test device saw it.</summary>
public readonly record struct Access(string Device, bool IsWrite, ulong Offset, int Size, ulong Value)
{
    public static Access W(string device, ulong offset, int size, ulong value) => new(device, true, offset, size, value);
    public static Access R(string device, ulong offset, int size, ulong value) => new(device, false, offset, size, value);

    public override string ToString() => $"{Device} {(IsWrite ? "W" : "R")} +0x{Offset:x} /{Size} 0x{Value:x}";
}

/// <summary>Accesses of several devices in the order they happened (test code: a lock and a list are fine).</summary>
public sealed class AccessLog
{
    private readonly Lock _lock = new();
    private readonly List<Access> _accesses = [];

    public void Add(Access access)
    {
        lock (_lock) _accesses.Add(access);
    }

    public Access[] Snapshot()
    {
        lock (_lock) return _accesses.ToArray();
    }
}

/// <summary>
/// A bus device that records every access in an <see cref="AccessLog"/>; reads return what
/// <paramref name="reader"/> says for (offset, size), or zero.
/// </summary>
public sealed class RecordingDevice(string name, AccessLog log, Func<ulong, int, ulong>? reader = null) : IBusDevice
{
    public void Read(ulong offset, Span<byte> data)
    {
        ulong value = reader?.Invoke(offset, data.Length) ?? 0;
        BusData.Set(data, value);
        log.Add(Access.R(name, offset, data.Length, BusData.Get(data)));
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data) =>
        log.Add(Access.W(name, offset, data.Length, BusData.Get(data)));
}
