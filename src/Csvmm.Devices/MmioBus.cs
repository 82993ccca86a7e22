using System.Runtime.CompilerServices;

namespace Csvmm.Devices;

/// <summary>
/// Guest-physical MMIO ranges as a sorted, overlap-refusing table searched by binary search. Frozen
/// before the vCPUs start; afterwards lock-free for every vCPU thread.
/// </summary>
public sealed class MmioBus
{
    private readonly List<Range> _building = [];
    private Range[] _ranges = [];
    private bool _frozen;

    private readonly record struct Range(ulong Base, ulong Length, IBusDevice Device, string Name)
    {
        public ulong Last => Base + (Length - 1);
    }

    /// <summary>Accesses that reached no device (reads return all-ones, writes are dropped).</summary>
    public long UnhandledAccesses;

    public bool IsFrozen => _frozen;

    public void Register(ulong baseAddress, ulong length, IBusDevice device, string name)
    {
        if (_frozen) throw new DeviceException($"MMIO bus is frozen; cannot add {name}");
        if (length == 0 || baseAddress + (length - 1) < baseAddress)
            throw new DeviceException($"MMIO range 0x{baseAddress:x}+0x{length:x} for {name} is invalid");
        var r = new Range(baseAddress, length, device, name);
        foreach (var o in _building)
            if (r.Base <= o.Last && o.Base <= r.Last)
                throw new DeviceException($"MMIO range 0x{r.Base:x}-0x{r.Last:x} of {name} overlaps {o.Name}");
        _building.Add(r);
    }

    public void Freeze()
    {
        var a = _building.ToArray();
        Array.Sort(a, (x, y) => x.Base.CompareTo(y.Base));
        _ranges = a;
        _frozen = true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Find(ulong address)
    {
        var r = _ranges;
        int lo = 0, hi = r.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (address < r[mid].Base) hi = mid - 1;
            else if (address > r[mid].Last) lo = mid + 1;
            else return mid;
        }
        return -1;
    }

    public bool Read(ulong address, Span<byte> data)
    {
        int i = Find(address);
        if (i < 0)
        {
            data.Fill(0xFF);
            Interlocked.Increment(ref UnhandledAccesses);
            return false;
        }
        ref readonly Range e = ref _ranges[i];
        e.Device.Read(address - e.Base, data);
        return true;
    }

    public bool Write(ulong address, ReadOnlySpan<byte> data)
    {
        int i = Find(address);
        if (i < 0)
        {
            Interlocked.Increment(ref UnhandledAccesses);
            return false;
        }
        ref readonly Range e = ref _ranges[i];
        e.Device.Write(address - e.Base, data);
        return true;
    }
}
