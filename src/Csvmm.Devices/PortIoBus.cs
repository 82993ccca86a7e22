using System.Runtime.CompilerServices;

namespace Csvmm.Devices;

/// <summary>
/// The 64 KiB x86 I/O port space as a flat table: one lookup per access, no search. Ranges are
/// registered while building the machine and refused when they overlap; after <see cref="Freeze"/>
/// the table is read-only and safe to use from every vCPU thread without locks.
/// </summary>
public sealed class PortIoBus
{
    private readonly byte[] _slot = new byte[65536];          // 0 = nothing, else index+1 into _entries
    private readonly List<Entry> _building = [];
    private Entry[] _entries = [];
    private bool _frozen;

    private readonly record struct Entry(ushort Base, ushort Length, IBusDevice Device, string Name);

    /// <summary>Accesses that reached no device (reads return all-ones, writes are dropped).</summary>
    public long UnhandledAccesses;

    public bool IsFrozen => _frozen;

    public void Register(ushort basePort, ushort length, IBusDevice device, string name)
    {
        if (_frozen) throw new DeviceException($"port bus is frozen; cannot add {name}");
        if (length == 0 || basePort + length > 65536)
            throw new DeviceException($"port range 0x{basePort:x}+{length} for {name} is invalid");
        if (_building.Count >= 254) throw new DeviceException("too many port-I/O devices");
        for (int p = basePort; p < basePort + length; p++)
            if (_slot[p] != 0)
                throw new DeviceException($"port range 0x{basePort:x}-0x{basePort + length - 1:x} of {name} overlaps {_building[_slot[p] - 1].Name}");
        _building.Add(new Entry(basePort, length, device, name));
        byte idx = (byte)_building.Count;
        for (int p = basePort; p < basePort + length; p++) _slot[p] = idx;
    }

    public void Freeze()
    {
        _entries = _building.ToArray();
        _frozen = true;
    }

    /// <summary>Name of the device at <paramref name="port"/>, or null (diagnostics).</summary>
    public string? NameAt(ushort port) => _slot[port] == 0 ? null : _building[_slot[port] - 1].Name;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Read(ushort port, Span<byte> data)
    {
        int s = _slot[port];
        if (s == 0 || s > _entries.Length)
        {
            data.Fill(0xFF);
            Interlocked.Increment(ref UnhandledAccesses);
            return false;
        }
        ref readonly Entry e = ref _entries[s - 1];
        e.Device.Read((ulong)(port - e.Base), data);
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Write(ushort port, ReadOnlySpan<byte> data)
    {
        int s = _slot[port];
        if (s == 0 || s > _entries.Length)
        {
            Interlocked.Increment(ref UnhandledAccesses);
            return false;
        }
        ref readonly Entry e = ref _entries[s - 1];
        e.Device.Write((ulong)(port - e.Base), data);
        return true;
    }
}
